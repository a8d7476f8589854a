"""What a new user hit: one line on stderr, exit status 2, one `visattn:` prefix, CLI command names."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visattn.cli import check_out_dir, clean_message, main


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"visattn {command}: error: ") and "Traceback" not in err
    assert lines[0].count("visattn") == 1 or "`visattn " in lines[0]  # one prefix; CLI commands may be named
    assert not lines[0][len(f"visattn {command}: error: "):].startswith("visattn")
    return lines[0]


def test_unknown_key_names_the_cli_command_with_one_prefix(capsys):
    assert main(["info", "sse"]) == 2
    line = one_line_error(capsys, "info")
    assert "`visattn list`" in line and "list_modules()" not in line and "Did you mean" in line


def test_library_messages_are_cleaned():
    assert clean_message("visattn: unknown module 'x'. `visattn.list_modules()` lists all keys.") == \
        "unknown module 'x'. `visattn list` shows the keys."
    inner = "se at --channels 8: visattn: SqueezeExcite got ..."
    assert clean_message(inner) == "se at --channels 8: SqueezeExcite got ..."
    assert clean_message("see `visattn list`") == "see `visattn list`"


def test_unknown_backbone_lists_the_names_not_a_python_call(capsys, tmp_path):
    out = tmp_path / "unused"
    assert main(["train", "--backbone", "resnet21", "--out", str(out)]) == 2
    line = one_line_error(capsys, "train")
    assert "list_backbones()" not in line and "resnet20" in line and "Did you mean" in line
    assert not out.exists()  # refused before anything is written


def test_module_argument_that_cannot_fit_the_channels(capsys):
    assert main(["info", "sge", "--channels", "16"]) == 2
    line = one_line_error(capsys, "info")
    assert "groups (64)" in line and "--channels 16" in line


@pytest.mark.parametrize("argv", [["info", "se:reduction=abc"], ["info", "se:reduction=0"], ["info", "se,cbam"]])
def test_bad_module_specs_in_info(argv, capsys):
    assert main(argv) == 2
    one_line_error(capsys, "info")


def test_out_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(Exception, match="file"):
            check_out_dir(out)
    check_out_dir(tmp_path / "new" / "folder")  # fine: nothing in the way
    assert main(["demo", "--out", str(blocker / "run")]) == 2
    assert "lies under" in one_line_error(capsys, "demo")
    assert main(["show", str(tmp_path), "--out", str(blocker)]) == 2
    assert "is a file" in one_line_error(capsys, "show")


def test_list_into_a_closed_pipe_is_quiet(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "visattn", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    proc.stdout.close()  # the reader is gone before anything is written (as `| head` after its lines)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "BrokenPipe" not in err and "Traceback" not in err and err == ""
    assert proc.returncode == 0
