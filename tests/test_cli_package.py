"""The shape of the command line: every parser in visattn.cli, libraries without argparse, one error line."""

import json
import re
from pathlib import Path

import pytest

from visattn.cli import build_parser, main
from visattn.train.compare import parse_head_variants, parse_transform, parse_variants
from visattn.train.config import TrainConfig

SRC = Path(__file__).parents[1] / "src" / "visattn"
RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"


def test_only_the_cli_package_parses_arguments():
    users = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if re.search(r"^\s*(import argparse|from argparse)", p.read_text(), re.M)]
    assert users and all(u.startswith("cli/") for u in users), users


def test_every_sub_command_is_in_the_parser():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"list", "info", "demo", "bench", "train", "compare", "ablate", "show", "predict", "export"}


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["bench", "se", "--repeat", "x"],
                                  ["show"], ["compare", "--task", "nope"], ["nope"]])
def test_usage_errors_are_one_line_with_a_pointer_to_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    command = "visattn" + (f" {argv[0]}" if argv[0] != "nope" else "")
    assert err.startswith(f"{command}: error: ") and f"(see `{command} --help`)" in err


def test_variants_are_parsed_by_the_library_with_value_errors():
    none, se, stn = parse_variants("none,se:reduction=8,stn")
    assert none.plain and se.attention == "se" and se.attention_kwargs == (("reduction", 8),)
    assert stn.transform == "stn" and stn.attention is None
    for bad, says in (("sse", "Did you mean"), ("stn:nope=8", "nope"), (" , ", "no module given")):
        with pytest.raises(ValueError, match=says):
            parse_variants(bad)
    assert parse_transform("none") == (None, {}) and parse_transform("stn") == ("stn", {})
    with pytest.raises(ValueError, match="expected one transform"):
        parse_transform("se")
    (cc,) = parse_head_variants("cc:recurrence=1")
    assert cc.head == "cc" and cc.attention_kwargs == (("recurrence", 1),)
    with pytest.raises(ValueError, match="unknown segmentation head"):
        parse_head_variants("fcn,nope")


def test_head_lr_scale_reads_older_runs_and_keeps_their_names():
    old = json.loads(next(RESULTS.glob("segmentation-scenes-heads-lr10/*-s0/config.json")).read_text())
    assert old["head_lr_mult"] == 10.0
    config = TrainConfig.from_dict(old)
    assert config.head_lr_scale == 10.0
    # digests computed before the rename: run folders named by them (runs/<backbone>-<head>-<digest>) still resume
    assert config.digest() == "09d7ba0c"
    assert TrainConfig(task="segmentation", head="danet", head_lr_scale=10.0).digest() == "a43b74b3"
    assert "head_lr_scale" in config.to_dict() and "head_lr_mult" not in config.to_dict()
    with pytest.raises(ValueError, match="head_lr_scale must be positive"):
        TrainConfig(task="segmentation", head_lr_scale=0)
