"""One module grammar on the command line: KEY[:ARG=VALUE[:ARG=VALUE]], comma-separated lists, everywhere."""

import argparse
import json

import pytest

import visattn
from visattn.bench.subjects import Spec, build_subject
from visattn.cli import HelpFormatter, build_parser, main
from visattn.spec import ModuleSpec, SpecError, parse_module, parse_modules


def test_parse_keys_arguments_and_values():
    specs = parse_modules("none, se:reduction=8:act_layer=gelu ,mixed_pool:pool_sizes=(6,3),cbam:no_spatial=True",
                          allow_none=True)
    assert specs == [ModuleSpec("none"), ModuleSpec("se", (("reduction", 8), ("act_layer", "gelu"))),
                     ModuleSpec("mixed_pool", (("pool_sizes", (6, 3)),)), ModuleSpec("cbam", (("no_spatial", True),))]
    for spec in specs:  # the canonical spelling parses back to the same spec
        assert parse_module(spec.text, allow_none=True) == spec
    assert parse_module("eca:kernel_size=None").kwargs == (("kernel_size", None),)
    assert parse_module("se:act_layer='8'").kwargs == (("act_layer", "8"),)  # quoted: a string, not a number
    assert parse_modules(["se", "se", "eca"]) == [ModuleSpec("se"), ModuleSpec("eca")]  # no repeats


def test_patterns_and_all_only_where_allowed():
    assert [s.key for s in parse_modules("cb*", patterns=True)] == visattn.list_modules("cb*")
    assert [s.key for s in parse_modules(["all"], patterns=True)] == visattn.list_modules()
    with pytest.raises(SpecError, match="no module matches 'zz\\*'"):
        parse_modules("zz*", patterns=True)
    with pytest.raises(SpecError, match="unknown module 'cb\\*'"):
        parse_modules("cb*")


@pytest.mark.parametrize(("text", "message"), [
    ("sse", "unknown module 'sse'. Did you mean .*'se'"),
    ("se:reductoin=4", "se has no argument 'reductoin'; did you mean 'reduction'\\?"),
    ("se:reduction=abc", "reduction takes a number \\(default 16\\), got str 'abc'"),
    ("cbam:no_spatial=1", "no_spatial takes True or False"),
    ("se:act_layer=3", "act_layer takes a word"),
    ("se:reduction", "expected ARG=VALUE"),
    ("se:reduction=4:reduction=8", "reduction is given twice"),
    ("none", "unknown module 'none'"),
    (" , ", "no module given"),
])
def test_bad_specs_say_what_and_suggest(text, message):
    with pytest.raises(SpecError, match=message):
        parse_modules(text)


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_shows_every_default():
    for name, parser in _subcommands().items():
        formatter = HelpFormatter(prog=name)
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.default is argparse.SUPPRESS:
                continue
            assert "default" in formatter._get_help_string(action).lower(), (name, action.option_strings)
        assert parser.formatter_class is HelpFormatter
    text = " ".join(_subcommands()["train"].format_help().split())  # help lines are wrapped
    assert "(default 128; segmentation: 16)" in text and "(default onecycle;" in text and "se:reduction=8" in text


def test_device_and_quiet_flags_are_the_same_everywhere():
    parser = build_parser()
    for command, extra in (("bench", []), ("train", []), ("compare", []), ("ablate", []), ("show", ["run"])):
        assert parser.parse_args([command, *extra]).device == "auto"
        for flag in ("-q", "--quiet", "--no-progress"):
            assert parser.parse_args([command, *extra, flag]).quiet is True
        assert parser.parse_args([command, *extra]).quiet is False


def test_bench_builds_modules_with_their_arguments(tmp_path, capsys):
    out = tmp_path / "b.json"
    # sge's default groups=64 cannot split 16 channels: only the given groups=4 builds, in this process and in
    # the child process that measures memory (so the arguments survived its JSON round trip)
    argv = ["bench", "se:reduction=4", "sge:groups=4", "se", "--channels", "16", "--size", "8", "--batch", "1",
            "--repeat", "1", "--warmup", "0", "--baseline", "none", "-q", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    rows = {r["key"]: r for r in report["results"]}
    assert list(rows) == ["se:reduction=4", "sge:groups=4", "se"]
    assert all(r["status"] == "ok" and r["memory_forward_bytes"] is not None for r in rows.values())
    params = lambda *a, **k: sum(p.numel() for p in visattn.create(*a, **k).parameters())  # noqa: E731
    assert rows["se:reduction=4"]["params"] == params("se", 16, reduction=4) != rows["se"]["params"]
    assert rows["sge:groups=4"]["params"] == params("sge", 16, groups=4)
    assert "se:reduction=4 sge:groups=4 se" in report["command"]
    assert main(["bench", "sge:gruops=4", "--size", "8"]) == 2
    assert "did you mean 'groups'" in capsys.readouterr().err


def test_bench_spec_survives_json_with_tuples():
    spec = Spec("module", "mixed_pool", 16, (8, 8), 1, kwargs={"pool_sizes": (4, 2), "norm_layer": "batch"})
    back = Spec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back == spec and isinstance(back.kwargs["pool_sizes"], tuple)
    module, _ = build_subject(back)
    assert module.pool_sizes == (4, 2)


def test_info_takes_the_grammar(capsys):
    assert main(["info", "se:reduction=4", "--channels", "64", "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["parameters at C=64"] == sum(p.numel() for p in visattn.create("se", 64, reduction=4).parameters())
    assert fields["arguments given"] == {"reduction": "4"}
