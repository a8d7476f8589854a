"""train / compare on the command line: the grammar, one-line errors, nothing lost, files that follow the umask."""

import json
import os
import stat

import pytest

from tests.data.test_fashion_mnist import write_tiny_set
from visattn.cli import main
from visattn.data import fashion_mnist as fm
from visattn.train import TrainConfig
from visattn.train import classifier as classifier_mod

TINY = ["--train-limit", "32", "--val-limit", "16", "--batch-size", "16", "--backbone", "resnet20", "-q",
        "--device", "cpu"]


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"visattn {command}: error: ") and "Traceback" not in err, err
    assert not lines[0][len(f"visattn {command}: error: "):].startswith("visattn")
    return lines[0]


def test_train_grammar_and_attention_kw_are_the_same(tiny_fmnist, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--attention", "se:reduction=4", "--data-dir", str(tiny_fmnist), "--out", str(a), *TINY]) == 0
    assert main(["train", "--attention", "se", "--attention-kw", "reduction=4", "--data-dir", str(tiny_fmnist),
                 "--out", str(b), *TINY]) == 0
    configs = [json.loads((d / "config.json").read_text()) for d in (a, b)]
    assert configs[0]["attention"] == configs[1]["attention"] == "se"
    assert configs[0]["attention_kwargs"] == configs[1]["attention_kwargs"] == {"reduction": 4}


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "--attention", "se", "--attention-kw", "reduction=abc"], "reduction takes a number"),
    (["train", "--attention", "se:reduction=4", "--attention-kw", "reduction=8"], "given twice"),
    (["train", "--attention", "se,cbam"], "train takes one module"),
    (["train", "--attention-kw", "reduction=4"], "'none' (no module) takes no arguments"),
    (["compare", "--attention", ""], "no module given"),
    (["compare", "--attention", " , "], "no module given"),
    (["compare", "--attention", "none,sge:gropus=8"], "did you mean 'groups'"),
    (["ablate", "cbam"], "ablations are defined for 'se'"),
    (["ablate", "se:reduction=4"], "one key alone"),
])
def test_bad_modules_are_one_line(argv, needle, tiny_fmnist, tmp_path, capsys):
    assert main([*argv, "--data-dir", str(tiny_fmnist), "--out", str(tmp_path / "r"), *TINY]) == 2
    line = one_line_error(capsys, argv[0])
    assert needle in line
    assert not (tmp_path / "r").exists()  # refused before any work


def test_negative_weight_decay(capsys):
    for argv in (["--wd", "-0.001"], ["--wd=-1e-4"], ["--wd", "-1e-4"]):  # the last one argparse took for an option
        with pytest.raises(SystemExit) as exc:
            main(["train", *argv])
        assert exc.value.code == 2 and "--wd: expected a float >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="weight decay must be >= 0"):
        TrainConfig(weight_decay=-1.0)


def test_out_under_a_file(tiny_fmnist, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    for command in ("train", "compare"):
        assert main([command, "--data-dir", str(tiny_fmnist), "--out", str(blocker / "run"), *TINY]) == 2
        assert "lies under" in one_line_error(capsys, command)
    assert main(["train", "--data-dir", str(tiny_fmnist), "--out", str(blocker), *TINY]) == 2
    assert "is a file" in one_line_error(capsys, "train")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("how", ["--data-dir", "VISATTN_DATA"])
@pytest.mark.parametrize("kind", ["empty", "file", "missing", "other files"])
def test_data_dir_is_used_exactly_as_given(how, kind, tmp_path, monkeypatch, capsys):
    # a complete copy where the automatic search would find it: it must not be used
    write_tiny_set(tmp_path / "debian")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    given = tmp_path / "given"
    if kind == "empty":
        given.mkdir()
    elif kind == "file":
        given.write_text("x")
    elif kind == "other files":
        given.mkdir()
        (given / "notes.txt").write_text("x")
    argv = ["train", "--out", str(tmp_path / "run"), *TINY]
    if how == "--data-dir":
        argv += ["--data-dir", str(given)]
    else:
        monkeypatch.setenv("VISATTN_DATA", str(given))
    assert main(argv) == 2
    line = one_line_error(capsys, "train")
    assert str(given) in line and {"empty": "empty" if how == "--data-dir" else "missing", "file": "is a file",
                                   "missing": "no such folder", "other files": "missing"}[kind] in line
    with pytest.raises(FileNotFoundError):
        fm.find_fashion_mnist(given if how == "--data-dir" else None, download_missing=False)
    # neither given: the automatic search still works
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    assert fm.find_fashion_mnist(download_missing=False) == tmp_path / "debian"


def test_result_files_follow_the_umask(tiny_fmnist, tmp_path):
    old = os.umask(0o022)
    try:
        run, comp = tmp_path / "run", tmp_path / "cmp"
        assert main(["train", "--data-dir", str(tiny_fmnist), "--out", str(run), "--epochs", "2", *TINY]) == 0
        assert main(["compare", "--attention", "none", "--data-dir", str(tiny_fmnist), "--out", str(comp),
                     *TINY]) == 0
    finally:
        os.umask(old)
    files = [run / "config.json", run / "result.json", run / "metrics.jsonl", *(run / "checkpoints").iterdir(),
             comp / "leaderboard.json", comp / "leaderboard.md"]
    assert len(files) == 7
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_interrupt_says_what_is_saved_and_how_to_resume(tiny_fmnist, tmp_path, monkeypatch, capsys):
    calls = []
    real = classifier_mod.evaluate

    def evaluate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during the second epoch's evaluation: epoch 1 is saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier_mod, "evaluate", evaluate_then_stop)
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(tiny_fmnist), "--epochs", "3", *TINY]
    assert main([*argv, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and str(out / "checkpoints" / "epoch-001.pt") in err[0]
    command = err[0].split("resume with: ", 1)[1]
    assert command.startswith("visattn train ") and f"--out {out}" in command
    monkeypatch.setattr(classifier_mod, "evaluate", real)
    assert main(command.split()[1:]) == 0  # the printed command resumes and finishes the run
    assert json.loads((out / "result.json").read_text())["epochs"] == 3
    assert "resuming" in capsys.readouterr().out


def test_interrupt_before_anything_is_saved(tiny_fmnist, tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(classifier_mod, "evaluate", stop)
    monkeypatch.chdir(tmp_path)  # the default --out, runs/..., is relative: keep it out of the repository
    assert main(["train", "--data-dir", str(tiny_fmnist), *TINY]) == 130  # default --out: added to the command
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "--out runs/" in err


def test_train_refuses_options_that_do_not_apply_in_one_line(tiny_fmnist, tmp_path, capsys):
    """Issue 19.7: --head on a classification run, --position for a module not placed in every block,
    --out inside the data folder; each before any data is read."""
    out = str(tmp_path / "run")
    assert main(["train", "--head", "danet", "--data-dir", str(tiny_fmnist), "--out", out, *TINY]) == 2
    assert "--head is a segmentation option" in one_line_error(capsys, "train")
    assert main(["train", "--attention", "cc", "--position", "pre", "--data-dir", str(tiny_fmnist),
                 "--out", out, *TINY]) == 2
    line = one_line_error(capsys, "train")
    assert "--position pre: cc is placed after last stage" in line and "per-block modules only" in line
    from visattn.cli.train import _check_position

    _check_position("pre", "se")  # a per-block module takes every position
    inside = tiny_fmnist / "runs" / "r"
    assert main(["train", "--data-dir", str(tiny_fmnist), "--out", str(inside), *TINY]) == 2
    assert "lies inside --data-dir" in one_line_error(capsys, "train") and not inside.exists()
    assert not (tmp_path / "run").exists()


def test_more_epochs_on_a_saved_run_needs_force(tiny_fmnist, tmp_path, capsys):
    """Issue 19.7: --epochs 2 on a finished 1-epoch run is refused in one plain line; --force goes on."""
    out = str(tmp_path / "run")
    argv = ["train", "--data-dir", str(tiny_fmnist), "--out", out, *TINY]
    assert main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--epochs", "2"]) == 2
    line = one_line_error(capsys, "train")
    assert "holds a 1-epoch run" in line and "--force" in line
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs"] == 1
    assert main([*argv, "--epochs", "2", "--force"]) == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs"] == 2


def test_device_cuda_without_cuda_fails_before_any_data(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    missing = tmp_path / "no-data-here"
    argv = ["train", "--data-dir", str(missing), "--out", str(tmp_path / "run"), *TINY[:-2], "--device", "cuda"]
    assert main(argv) == 2
    line = one_line_error(capsys, "train")
    assert "CUDA is not available" in line and "no-data-here" not in line
    assert not (tmp_path / "run").exists()
