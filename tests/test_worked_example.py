"""docs/worked-example.md runs as written: its code blocks, in order, in a fresh folder (issue 20, item 9)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.test_fashion_mnist import write_tiny_set

PAGE = Path(__file__).resolve().parents[1] / "docs" / "worked-example.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def page_blocks() -> list[tuple[str, str]]:
    """The page's ``bash`` and ``python`` code blocks, in order."""
    return [(kind, body) for kind, body in BLOCK.findall(PAGE.read_text())]


def test_the_page_has_the_whole_path():
    commands = " ".join(body for kind, body in page_blocks() if kind == "bash")
    for step in ("visattn train --dataset fashion-mnist", "--pretrained runs/fmnist", "--attention cbam",
                 "--dataset image-folder", "visattn predict", "visattn export", "--format onnx"):
        assert step in commands, step


def test_the_worked_example_runs_as_written(tmp_path):
    for name in ("PIL", "onnx", "onnxruntime", "timm"):
        pytest.importorskip(name)
    write_tiny_set(tmp_path / "data" / "fashion-mnist", n_train=120, n_test=40)
    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
               XDG_CACHE_HOME=str(tmp_path / "cache"), VISATTN_DATA="", OMP_NUM_THREADS="2",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.pop("VISATTN_DATA")
    outputs = []
    for kind, body in page_blocks():
        command = ["bash", "-e", "-o", "pipefail", "-c", body] if kind == "bash" else [sys.executable, "-c", body]
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{kind} block failed:\n{body}\n--- stdout\n{proc.stdout}\n--- {proc.stderr}"
        outputs.append(proc.stdout)
    # the fine-tuned run loaded the first run's weights and started CBAM fresh
    assert (tmp_path / "runs" / "cluttered-cbam" / "result.json").is_file()
    fine_tune = next(out for out in outputs if "runs/cluttered-cbam" in out and "pretrained" in out)
    assert "pretrained runs/fmnist" in fine_tune and "CBAM" in fine_tune
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions and all(len(p["top"]) == 3 for p in predictions)
    assert all(1 >= p["top"][0]["probability"] >= p["top"][-1]["probability"] >= 0 for p in predictions)
    names = [p.name for p in (tmp_path / "data" / "cluttered" / "val").iterdir()]
    assert all(t["class"] in names for p in predictions for t in p["top"])
    # the ONNX file states its preprocessing, and export compared onnxruntime with eager
    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "cluttered-cbam.onnx")).metadata_props}
    meta = json.loads(props["visattn"])
    assert meta["size"] == 64 and meta["channels"] == 3 and len(meta["mean"]) == 3
    assert "matches eager" in outputs[-1] and "onnxruntime" in outputs[-1]
