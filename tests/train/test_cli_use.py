"""The practitioner's CLI (issue 20): recipe flags, `visattn predict` and `visattn export` on a finished run."""

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from visattn.cli import build_parser, main

TINY = ["--backbone", "plaincnn", "--epochs", "1", "--batch-size", "16", "--train-limit", "32", "--val-limit", "16",
        "--device", "cpu", "--quiet"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_recipe_flags_reach_the_run(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(tiny_fmnist), *TINY, "--opt", "adamw", "--sched", "cosine",
            "--warmup-epochs", "0.5", "--label-smoothing", "0.1", "--accum-steps", "2", "--model-ema",
            "--eval-every", "1", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["opt"], config["schedule"], config["warmup_epochs"], config["label_smoothing"],
            config["accum_steps"], config["model_ema"], config["lr"]) == ("adamw", "cosine", 0.5, 0.1, 2, True, 1e-3)
    assert (out / "steps.csv").is_file() and (out / "metrics.csv").is_file()


def test_mixup_with_segmentation_is_one_line(capsys):
    assert main(["train", "--task", "segmentation", "--mixup", "0.2", "--device", "cpu"]) == 2
    assert "classification only" in one_error_line(capsys)


def test_a_missing_timm_is_one_line(tiny_fmnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)
    argv = ["train", "--data-dir", str(tiny_fmnist), *TINY, "--opt", "adamw", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "visattn[train]" in one_error_line(capsys)


@pytest.fixture
def finished_run(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(tiny_fmnist), *TINY, "--out", str(out)]) == 0
    return out


def _pngs(folder: Path, data: Path, count: int) -> list[str]:
    from PIL import Image

    from visattn.data.fashion_mnist import load_fashion_mnist

    folder.mkdir(parents=True, exist_ok=True)
    images, _ = load_fashion_mnist("test", data)
    paths = []
    for i in range(count):
        Image.fromarray(images[i].numpy()).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


def test_predict_prints_topk_with_class_names(finished_run, tiny_fmnist, tmp_path, capsys):
    from visattn.data.fashion_mnist import CLASSES

    paths = _pngs(tmp_path / "images", tiny_fmnist, 2)
    capsys.readouterr()
    assert main(["predict", str(finished_run), *paths, "--topk", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(p) for line, p in zip(lines, paths, strict=True))
    assert all(len(re.findall(r"\d+\.\d%", line)) == 3 for line in lines)
    assert main(["predict", str(finished_run), *paths, "--topk", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert all(t["class"] in CLASSES for r in results for t in r["top"])
    (tmp_path / "broken.png").write_bytes(b"no image")
    assert main(["predict", str(finished_run), str(tmp_path / "broken.png")]) == 2
    assert "broken.png" in one_error_line(capsys)


def test_export_checks_and_reports(finished_run, tmp_path, capsys):
    target = tmp_path / "model.ts"
    assert main(["export", str(finished_run), "--format", "torchscript", "--out", str(target)]) == 0
    out = capsys.readouterr().out
    assert "matches eager" in out and target.is_file() and Path(f"{target}.json").is_file()
    assert json.loads(Path(f"{target}.json").read_text())["channels"] == 1



def test_readme_practitioner_commands_parse():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Use it on your own data", 1)[1].split("\n## ", 1)[0]
    assert len(section.strip().splitlines()) <= 15
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    commands = [shlex.split(line.split("  #")[0]) for line in block.strip().splitlines()]
    assert [c[1] for c in commands] == ["train", "predict", "export"]
    for command in commands:
        build_parser().parse_args(command[1:])
