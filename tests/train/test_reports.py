"""Reports a reader can trust: recipe titles, error-bar notes, one panel per ablation, latency once per model."""

import importlib
import math

import matplotlib.pyplot as plt
import pytest

from visattn.train import TrainConfig, Variant, ablation_variants
from visattn.train.compare import ABLATIONS, describe_recipe, leaderboard_markdown, leaderboard_rows, paired_delta
from visattn.train.plots import plot_ablation, plot_leaderboard

compare_module = importlib.import_module("visattn.train.compare")  # the package's `compare` is the function


def _result(acc, seed, params=100):
    return {"accuracy": acc, "params": params, "flops": 1e6, "train_time_s": 1.0, "images_per_s": 10.0,
            "config": {"seed": seed}}


def _ablation_rows(seeds=(0, 1, 2)):
    results = {}
    for i, v in enumerate(ablation_variants()):
        results.setdefault(v.slug, [_result(80 + i + 0.5 * s, s) for s in seeds])
    return leaderboard_rows(TrainConfig(), ablation_variants(), results, latency=False)


def test_latency_measured_once_per_distinct_model(monkeypatch):
    calls = []

    def fake(model, shape, device="cpu", repeat=30):
        calls.append(shape)
        return {"median": 2.0, "p10": 1.5, "p90": 3.0}

    monkeypatch.setattr(compare_module, "latency_stats", fake)
    variants = ablation_variants()
    results = {v.slug: [_result(90.0, 0)] for v in variants}
    rows = leaderboard_rows(TrainConfig(), variants, results)
    assert len(rows) == 14 and len(calls) == len({v.slug for v in variants}) == 11
    assert all(r["latency_cpu_ms"] == 2.0 and r["latency_cpu_p90_ms"] == 3.0 for r in rows)
    assert calls[0] == (1, 1, 28, 28)
    md = leaderboard_markdown(TrainConfig(), rows)
    assert "| 2.00 (1.50-3.00) |" in md and "measured once per distinct model" in md


def test_delta_to_the_plain_network_carries_its_seed_spread():
    results = {"none": [_result(50.0, 0), _result(54.0, 1)], "stn": [_result(60.0, 0), _result(61.0, 1)]}
    variants = [Variant("none"), Variant("stn", transform="stn")]
    rows = leaderboard_rows(TrainConfig(dataset="cluttered-fashion-mnist"), variants, results, latency=False)
    stn, none = (next(r for r in rows if r["label"] == k) for k in ("stn", "none"))
    mean, std, n = paired_delta(stn, none)
    assert n == 2 and mean == pytest.approx(8.5) and std == pytest.approx(math.sqrt((10 - 8.5) ** 2 + (7 - 8.5) ** 2))
    md = leaderboard_markdown(TrainConfig(dataset="cluttered-fashion-mnist"), rows)
    assert f"| +8.50 ± {std:.2f} |" in md and "Δ vs none (± std of per-seed Δ)" in md
    assert Variant("stn", transform="stn").slug == "stn" and Variant("x", "cbam", transform="stn").slug == "stn-cbam"
    assert Variant("stn", transform="stn").apply(TrainConfig(), 3).transform == "stn"


def test_ablation_plot_has_one_panel_per_group_with_error_bars(tmp_path):
    rows = _ablation_rows()
    fig = plot_ablation(rows, tmp_path / "ablation.png", "resnet20 on fashion-mnist, 3 seed(s)")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(ABLATIONS)
    for ax, (_, _, values) in zip(panels, ABLATIONS.values(), strict=True):
        points = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
        assert len(points) == len(values)  # one point per setting
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in values]
        segments = [c.lines[2][0].get_segments()[0] for c in points]  # seed error bars: one vertical line each
        assert all(abs(s[1][1] - s[0][1]) > 0.9 for s in segments)
    title = fig._suptitle.get_text()
    assert "resnet20 on fashion-mnist" in title and "± 1 std over 3 seeds" in title
    plt.close(fig)
    assert (tmp_path / "ablation.png").stat().st_size > 1000


def test_compare_plots_carry_the_recipe_and_what_the_error_bars_are(tmp_path, monkeypatch):
    titles = []
    real_savefig = plt.Figure.savefig

    def spy(fig, path, *a, **k):
        titles.append((str(path), fig._suptitle.get_text() if fig._suptitle else ""))
        return real_savefig(fig, path, *a, **k)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    base = TrainConfig(backbone="plaincnn", dataset="cluttered-fashion-mnist", dataset_kwargs={"canvas": 48},
                       epochs=3, train_limit=8000)
    results = {"none": [_result(50.0, 0), _result(54.0, 1)], "cbam": [_result(55.0, 0), _result(57.0, 1)]}
    rows = leaderboard_rows(base, [Variant("none"), Variant("cbam", "cbam")], results, latency=False)
    recipe = describe_recipe(base, 2)
    assert "cluttered-fashion-mnist (canvas=48)" in recipe and "8,000 training images x 3 epoch(s)" in recipe
    assert "no global pooling" not in recipe
    flat = describe_recipe(TrainConfig(backbone="plaincnn", transform="stn", global_pool=False), 2)
    assert "plaincnn + stn at the input (classifier on the whole last map, no global pooling)" in flat
    from dataclasses import replace

    assert "no global pooling" not in leaderboard_markdown(base, rows)
    assert "no global pooling: the classifier reads" in leaderboard_markdown(replace(base, global_pool=False), rows)
    paths = plot_leaderboard(tmp_path, rows, recipe)
    assert [p.name for p in paths] == ["accuracy_vs_params.png"]
    (path, title), = titles
    assert path.endswith("accuracy_vs_params.png") and "cluttered-fashion-mnist (canvas=48)" in title
    assert "2 seed(s)" in title and "error bars: ± 1 std over 2 seeds" in title
    assert plot_ablation is not None and not (tmp_path / "ablation.png").exists()


def test_leaderboard_verdict_is_the_paired_t_test_and_needs_three_seeds():
    base = TrainConfig(dataset="cluttered-fashion-mnist")
    variants = [Variant("none"), Variant("stn", transform="stn"), Variant("cbam", "cbam")]
    three = {"none": [_result(50.0, 0), _result(52.0, 1), _result(51.0, 2)],
             "stn": [_result(60.0, 0), _result(61.0, 1), _result(60.5, 2)],  # +9.5 ± 0.5: ahead
             "cbam": [_result(49.0, 0), _result(54.0, 1), _result(51.0, 2)]}  # +0.33 ± 1.53: level
    md = leaderboard_markdown(base, leaderboard_rows(base, variants, three, latency=False))
    assert "| verdict (paired t-test, 5%) |" in md and "no verdict below 3 seeds" in md
    assert "| +9.50 ± 0.50 | ahead (p < 0.001) |" in md and "| +0.33 ± 1.53 | level (p = 0.742) |" in md
    header, rule = (line for line in md.splitlines() if line.startswith("| module") or line.startswith("|---"))
    assert header.count("|") == rule.count("|")
    two = {k: v[:2] for k, v in three.items()}
    md = leaderboard_markdown(base, leaderboard_rows(base, variants, two, latency=False))
    assert "| +9.50 ± 0.71 | - (2 seeds) |" in md and "ahead" not in md.split("Latency")[1]
