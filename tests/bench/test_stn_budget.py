"""benchmarks/stn_budget.py: accuracy, Δ to the plain network and localisation per epoch, over seeds."""

import json
from pathlib import Path

import pytest

from tests._scripts import load_script


@pytest.fixture(scope="module")
def stn_budget():
    return load_script("benchmarks", "stn_budget")


def _run(folder: Path, name: str, accuracies: list[float], localisation: list[dict] | None = None) -> None:
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_limit": 1280, "batch_size": 128}))
    rows = []
    for epoch, acc in enumerate(accuracies, 1):
        row = {"epoch": epoch, "train_loss": 1.0, "val_accuracy": acc}
        if localisation:
            row.update({f"loc_{k}": v for k, v in localisation[epoch - 1].items()})
        rows.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")


def _loc(distance: float, slope: float) -> dict:
    return {"mean_abs_det": 0.5, "theta_std": 0.1, "corr_x": 0.9, "corr_y": 0.9, "slope_x": slope, "slope_y": slope,
            "centre_distance_px": distance, "baseline_distance_px": 12.0}


def test_per_epoch_deltas_are_paired_by_seed_and_the_first_localising_epoch_needs_every_seed(stn_budget, tmp_path):
    _run(tmp_path, "none-s0", [50.0, 60.0, 70.0])
    _run(tmp_path, "none-s1", [52.0, 62.0, 68.0])
    # seed 0 is closer than one fixed window from epoch 2, seed 1 only from epoch 3; slopes pass 0.5 at epoch 3 on both
    _run(tmp_path, "stn-s0", [49.0, 63.0, 74.0], [_loc(13, 0.1), _loc(10, 0.4), _loc(6, 0.8)])
    _run(tmp_path, "stn-s1", [51.0, 61.0, 71.0], [_loc(13, 0.1), _loc(12.5, 0.6), _loc(7, 0.7)])
    summary = stn_budget.summarise(stn_budget._runs(tmp_path))
    assert summary["steps_per_epoch"] == 10
    stn = summary["variants"]["stn"]
    epoch3 = stn["rows"][2]
    assert epoch3["steps"] == 30 and epoch3["delta"]["values"] == [4.0, 3.0]  # 74 - 70, 71 - 68: paired by seed
    assert epoch3["accuracy"]["mean"] == pytest.approx(72.5)
    assert epoch3["localisation"]["centre_distance_px"]["mean"] == pytest.approx(6.5)
    assert stn["first"] == {"closer_than_fixed": 3, "follows": 3}
    assert "localisation" not in summary["variants"]["none"]["rows"][0]
    text = stn_budget.markdown(summary, "cmd")
    assert "| 3 | 30 | 72.50 ± 2.12 | +3.50 ± 0.71 |" in text
    assert "than one fixed window on every seed: epoch 3" in text


def test_a_folder_without_the_plain_network_is_refused(stn_budget, tmp_path):
    _run(tmp_path, "stn-s0", [50.0])
    with pytest.raises(SystemExit, match="no plain network"):
        stn_budget._runs(tmp_path)


def test_the_hidden_units_are_what_fc_loc_reads_and_dead_units_show(stn_budget):
    import torch

    from visattn.modules.stn import SpatialTransformer

    transform = SpatialTransformer(1, loc_pool=2).eval()
    x = torch.randn(5, 1, 24, 24)
    with torch.no_grad():
        h = stn_budget._fc_loc_input(transform, x)
        assert torch.allclose(transform.fc_loc(h), transform.attention_map(x).flatten(1))
        transform.localization[-2].bias.fill_(-1e3)  # every ReLU of the last hidden layer dead
        assert not (stn_budget._fc_loc_input(transform, x) > 0).any()
    assert not transform.fc_loc._forward_hooks  # the hook is removed
