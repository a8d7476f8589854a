"""benchmarks/budget_sweep.py: per-budget differences to the plain network and the rank agreement between budgets."""

import json
import math
from pathlib import Path

import pytest

from tests._scripts import load_script


@pytest.fixture(scope="module")
def budget_sweep():
    return load_script("benchmarks", "budget_sweep")


def _board(folder: Path, scores: dict[str, dict[str, float]], metric: str = "accuracy") -> Path:
    rows = []
    for label, per_seed in scores.items():
        values = list(per_seed.values())
        rows.append({"label": label, "group": "", "plain": label == "none", "seeds": len(values),
                     f"{metric}_mean": sum(values) / len(values), f"{metric}_std": 0.0,
                     f"{metric}_per_seed": per_seed})
    folder.mkdir()
    (folder / "leaderboard.json").write_text(json.dumps({"config": {}, "rows": rows}))
    return folder


def test_spearman_with_ties_and_reversed_orders(budget_sweep):
    assert budget_sweep.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert budget_sweep.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert budget_sweep._ranks([5.0, 1.0, 5.0]) == [1.5, 0.0, 1.5]
    assert math.isnan(budget_sweep.spearman([1, 2], [2, 1]))


def test_paired_differences_and_verdicts_per_budget(budget_sweep, tmp_path):
    small = _board(tmp_path / "small", {"none": {"0": 70.0, "1": 72.0, "2": 71.0},
                                        "a": {"0": 60.0, "1": 63.0, "2": 61.0},  # behind: -9.67 ± 0.58
                                        "b": {"0": 71.0, "1": 71.0, "2": 72.0},  # level: +0.33 ± 1.15
                                        "c": {"0": 73.0, "1": 75.0, "2": 74.0}})  # ahead: +3.00 ± 0
    large = _board(tmp_path / "large", {"none": {"0": 80.0, "1": 81.0, "2": 82.0},
                                        "a": {"0": 80.0, "1": 82.0, "2": 81.0},  # level now
                                        "b": {"0": 79.0, "1": 80.0, "2": 81.0},  # behind: -1 ± 0
                                        "c": {"0": 83.0, "1": 84.0, "2": 85.0}})  # ahead
    result = budget_sweep.sweep([("10k", small), ("30k", large)])
    a = result["budgets"][0]["deltas"]["a"]
    assert a["mean"] == pytest.approx(-29 / 3) and a["std"] == pytest.approx(0.57735, abs=1e-4) and a["seeds"] == 3
    (step,) = result["steps"]
    # means: 10k (a -9.67, b +0.33, c +3) -> 30k (a 0, b -1, c +3): ranks (0, 1, 2) -> (1, 0, 2)
    assert step["variants"] == 3 and step["spearman"] == pytest.approx(0.5)
    assert step["judged"] == 3 and step["same_verdict"] == 1  # only c stays ahead
    verdicts = {k: (d["verdict"], d["seeds"]) for k, d in result["budgets"][1]["deltas"].items()}
    assert verdicts == {"a": ("level", 3), "b": ("behind", 3), "c": ("ahead", 3)}
    md = budget_sweep.to_markdown(result)
    assert "| a | -9.67 ± 0.58 (behind, p = 0.001) | +0.00 ± 1.00 (level, p = 1.000) |" in md
    assert "paired t-test" in md and "1 of the 3 with a verdict at both keep it" in md
    assert "| plain (accuracy %) | 71.00 ± 0.00 | 81.00 ± 0.00 |" in md
    assert md.index("| c |") < md.index("| b |") < md.index("| a |")


def test_two_seeds_give_no_verdict_and_are_not_counted(budget_sweep, tmp_path):
    # within one std of zero used to count as a verdict even from two seeds
    small = _board(tmp_path / "small", {"none": {"0": 70.0, "1": 72.0}, "a": {"0": 75.0, "1": 76.0}})
    large = _board(tmp_path / "large", {"none": {"0": 80.0, "1": 81.0}, "a": {"0": 85.0, "1": 86.5}})
    result = budget_sweep.sweep([("10k", small), ("30k", large)])
    assert result["budgets"][0]["deltas"]["a"]["verdict"] == "too few seeds"
    (step,) = result["steps"]
    assert step["judged"] == 0 and step["same_verdict"] == 0
    md = budget_sweep.to_markdown(result)
    assert "| a | +4.50 ± 0.71 (2 seeds) | +5.25 ± 0.35 (2 seeds) |" in md and "ahead" not in md.split("Δ:")[0]
