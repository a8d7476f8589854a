"""Logs a dashboard reads (issue 20, item 7): per-step CSV / JSONL always, TensorBoard on request."""

import csv
import sys

import pytest
import torch

from tests._interrupt import interrupt_after_first_checkpoint
from visattn.train import TrainConfig, train
from visattn.train.logs import RunLog, read_jsonl


def config(data, **kw):
    base = dict(backbone="plaincnn", data_dir=str(data), epochs=2, batch_size=16, lr=0.05, train_limit=48,
                val_limit=16, seed=1, device="cpu")
    return TrainConfig(**(base | kw))


def quiet(*args, **kwargs):
    pass


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_and_jsonl_hold_the_same_rows(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_fmnist), out, progress=False, log=quiet)
    steps = read_jsonl(out / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 7)) and [s["epoch"] for s in steps] == [1] * 3 + [2] * 3
    assert all(s["lr"] > 0 and s["train_loss"] > 0 for s in steps)
    as_csv = csv_rows(out / "steps.csv")
    assert [float(r["train_loss"]) for r in as_csv] == [s["train_loss"] for s in steps]
    epochs = read_jsonl(out / "metrics.jsonl")
    assert [float(r["val_accuracy"]) for r in csv_rows(out / "metrics.csv")] == [e["val_accuracy"] for e in epochs]


def test_a_resumed_run_appends_without_duplicates(tiny_fmnist, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(config(tiny_fmnist), straight, progress=False, log=quiet)
    out = tmp_path / "resumed"
    interrupt_after_first_checkpoint(monkeypatch, lambda: train(config(tiny_fmnist), out, progress=False, log=quiet))
    # a killed run may have logged updates of the epoch it did not finish: the resume drops them
    with RunLog(out, resume_epoch=1) as log:
        log.step({"epoch": 2, "step": 4, "train_loss": 9.9, "lr": 0.1, "images_per_s": 1.0})
    train(config(tiny_fmnist), out, progress=False, log=quiet)
    for name in ("steps.jsonl", "metrics.jsonl"):
        got, want = read_jsonl(out / name), read_jsonl(straight / name)
        assert [(r["epoch"], r.get("step")) for r in got] == [(r["epoch"], r.get("step")) for r in want]
        assert [r["train_loss"] for r in got] == pytest.approx([r["train_loss"] for r in want])
    assert len(csv_rows(out / "steps.csv")) == 6 and len(csv_rows(out / "metrics.csv")) == 2


def test_a_new_column_widens_the_csv():
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    with RunLog(folder) as log:
        log.epoch({"epoch": 1, "train_loss": 1.0})
        log.epoch({"epoch": 2, "train_loss": 0.5, "val_accuracy": 50.0})
        log.epoch({"epoch": 3, "train_loss": 0.4})
    rows = csv_rows(folder / "metrics.csv")
    assert [r["val_accuracy"] for r in rows] == ["", "50.0", ""] and [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_tensorboard_event_files_hold_the_scalars(tiny_fmnist, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(config(tiny_fmnist, epochs=1), out, progress=False, log=quiet, tensorboard=True)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/train_loss")]
    assert [e.step for e in events.Scalars("train/train_loss")] == [1, 2, 3]
    assert losses == pytest.approx([s["train_loss"] for s in read_jsonl(out / "steps.jsonl")])
    assert "epoch/val_accuracy" in events.Tags()["scalars"]


def test_tensorboard_missing_is_one_line(tiny_fmnist, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install .visattn\[tensorboard\]") as caught:
        train(config(tiny_fmnist), tmp_path / "run", progress=False, log=quiet, tensorboard=True)
    assert "\n" not in str(caught.value) and not (tmp_path / "run").exists()  # refused before anything ran


def test_step_rows_follow_accumulated_updates(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_fmnist, epochs=1, accum_steps=2), out, progress=False, log=quiet)
    steps = read_jsonl(out / "steps.jsonl")  # 3 batches -> groups of 2 and 1
    assert [s["step"] for s in steps] == [1, 2]
    assert torch.isfinite(torch.tensor([s["train_loss"] for s in steps])).all()
