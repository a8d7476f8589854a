import json

import pytest

import visattn
from visattn.cli import main


def test_list_table_and_json(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for key in visattn.list_modules():
        assert f"\n{key} " in out
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in rows] == visattn.list_modules()
    assert {"key", "module", "paper", "year", "role", "domain", "complexity", "parameter_free"} <= set(rows[0])


def test_list_role_filter(capsys):
    assert main(["list", "--role", "plugin", "--json"]) == 0
    assert all(r["role"] == "plugin" for r in json.loads(capsys.readouterr().out))


def test_info_parameter_count(capsys):
    assert main(["info", "se", "--channels", "256"]) == 0
    out = capsys.readouterr().out
    assert "8,464" in out and "https://arxiv.org/abs/1709.01507" in out and "reduction=16" in out
    assert main(["info", "se", "--channels", "256", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters at C=256"] == 8464


def test_unknown_key_exit_2_with_suggestion(capsys):
    assert main(["info", "sse"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" in err and "'se'" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["info", "se", "--channels", "0"], ["list", "--role", "nope"], ["frobnicate"], []])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err  # one line and where the help is, not argparse's whole usage
    assert len(err.strip().splitlines()) == 1 and "usage" not in err and "--help`" in err, err
