"""The poly schedule follows lr * (1 - t / T) ** 0.9 at every step, not only at its end."""

import json

import pytest

from visattn.train import TrainConfig, train


def _lrs(out):
    return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_poly_learning_rate_after_every_epoch(tiny_fmnist, tmp_path):
    # 32 images in batches of 8: 4 steps an epoch, T = 12 steps over 3 epochs
    config = TrainConfig(backbone="plaincnn", data_dir=str(tiny_fmnist), epochs=3, batch_size=8, lr=0.05,
                         schedule="poly", train_limit=32, val_limit=8, seed=0, device="cpu")
    train(config, tmp_path / "run", progress=False, log=lambda *a, **k: None)
    lrs = _lrs(tmp_path / "run")
    expected = [0.05 * (1 - 4 * epoch / 12) ** 0.9 for epoch in (1, 2, 3)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # power 1 (a linear decay) would give 0.0333 and 0.0167 here: far outside the tolerance
    assert abs(lrs[0] - 0.05 * 2 / 3) > 1e-3
