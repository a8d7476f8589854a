"""compare's plots: labels that never overprint, the per-seed difference dot plot, an ablation axis that starts
where the data do (issue 19, "Packaging a user can trust")."""

import itertools
import json
import random
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from visattn.stats import format_p, paired_t_test
from visattn.train.plot_labels import label_boxes
from visattn.train.plots import plot_ablation, plot_scatter, reference_row

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"
CLUTTERED = ["none", "van", "triplet", "bam", "scconv", "sk:groups=8", "eca", "gc", "simam", "scse", "stn",
             "sge:groups=4", "polarized", "residual_attention", "mixed_pool", "strip", "lka", "se", "coord", "cbam",
             "rga_c"]


def crowded_rows(seed: int = 0) -> list[dict]:
    """21 modules as in cluttered-compare: most within 65-90k parameters and 69-74%, one far out."""
    rng = random.Random(seed)
    rows = []
    for i, label in enumerate(CLUTTERED):
        params = 400_000 if label == "rga_c" else rng.uniform(66_000, 90_000)
        per_seed = {str(s): rng.gauss(71.5, 1.2) for s in range(3)}
        mean = sum(per_seed.values()) / 3
        rows.append({"label": label, "attention": label.split(":")[0], "plain": label == "none", "group": "",
                     "slug": label, "seeds": 3, "accuracy_mean": mean, "accuracy_std": 1.0,
                     "accuracy_per_seed": per_seed, "params": params, "latency_cpu_ms": rng.uniform(1.0, 1.6) + i % 3})
    return rows


def assert_labels_apart(fig, n_labels: int) -> None:
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = label_boxes(ax.texts, renderer)
    assert len(boxes) == n_labels
    frame = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), f"labels overlap: {a} and {b}"
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("x_key", "x_label"), [("params", "parameters"),
                                                 ("latency_cpu_ms", "CPU latency, batch 1 (ms, median)")])
def test_no_two_labels_overlap_in_a_crowded_cluster(tmp_path, x_key, x_label, seed):
    rows = crowded_rows(seed)
    fig = plot_scatter(rows, x_key, x_label, tmp_path / "p.png", "recipe, 3 seed(s)")
    fig.canvas.draw()  # the boxes as drawn
    assert_labels_apart(fig, len(rows))
    plt.close(fig)


def test_the_committed_cluttered_comparison_is_readable(tmp_path):
    rows = json.loads((RESULTS / "cluttered-compare" / "leaderboard.json").read_text())["rows"]
    for x_key, x_label in (("params", "parameters"), ("latency_cpu_ms", "CPU latency, batch 1 (ms, median)")):
        fig = plot_scatter(rows, x_key, x_label, tmp_path / "p.png", "cluttered")
        fig.canvas.draw()
        assert_labels_apart(fig, len(rows))
        assert fig.axes[0].get_xscale() == ("log" if x_key == "params" else "linear")  # rga_c is 5x the others
        plt.close(fig)


def test_dot_plot_of_per_seed_differences_beside_the_scatter(tmp_path):
    rows = crowded_rows()
    rows[1]["accuracy_per_seed"] = {s: v + 5.0 + 0.1 * int(s) for s, v in rows[0]["accuracy_per_seed"].items()}
    fig = plot_scatter(rows, "params", "parameters", tmp_path / "p.png", "recipe")
    assert len(fig.axes) == 2
    dots = fig.axes[1]
    ticks = [t.get_text() for t in dots.get_yticklabels()]
    reference = reference_row(rows)
    tests = {r["label"]: paired_t_test([r["accuracy_per_seed"][s] - reference["accuracy_per_seed"][s]
                                        for s in "012"]) for r in rows if r is not reference}
    order = sorted(tests, key=lambda k: tests[k].mean)
    assert [t.rsplit(": ", 1)[0] for t in ticks] == order  # sorted by the mean difference, the reference left out
    assert ticks[-1] == f"van: ahead ({format_p(tests['van'].p)})"
    assert any(line.get_xdata()[0] == 0 for line in dots.get_lines())  # the zero line
    seeds = [c for c in dots.collections if len(c.get_offsets()) == 3]
    assert len(seeds) == len(rows) - 1  # one dot per seed for every module
    low, high = tests["van"].interval(0.95)
    bars = [c for c in dots.collections if type(c).__name__ == "LineCollection"]
    spans = [tuple(sorted((seg[0][0], seg[1][0]))) for c in bars for seg in c.get_segments()]
    assert any(abs(a - low) < 1e-9 and abs(b - high) < 1e-9 for a, b in spans)  # 95% t interval
    plt.close(fig)


def test_no_dot_plot_without_per_seed_results(tmp_path):
    rows = crowded_rows()
    for r in rows:
        r.pop("accuracy_per_seed")
    fig = plot_scatter(rows, "params", "parameters", tmp_path / "p.png", "recipe")
    assert len(fig.axes) == 1
    plt.close(fig)


def test_ablation_axis_starts_where_the_data_do_with_points_not_bars(tmp_path):
    rows = json.loads((RESULTS / "fashion-mnist-ablate-se" / "leaderboard.json").read_text())["rows"]
    fig = plot_ablation(rows, tmp_path / "ablation.png", "recipe")
    lowest = min(r["accuracy_mean"] for r in rows)
    highest = max(r["accuracy_mean"] for r in rows)
    for ax in fig.axes:
        assert not [p for p in ax.patches if type(p).__name__ == "Rectangle"]  # no bars: they would claim a zero
        bottom, top = ax.get_ylim()
        assert lowest - 0.5 <= bottom < lowest and highest < top <= highest + 0.5
    assert "does not start at 0" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_too_many_points_for_names_get_numbers_and_a_key(tmp_path):
    rows = []
    for i in range(80):  # 80 long names around one tight clump: they cannot all fit
        rows.append({"label": f"a_module_with_a_name_far_too_long_to_fit_{i}", "attention": "x", "group": "",
                     "slug": str(i), "seeds": 1, "accuracy_mean": 70 + 0.01 * i, "accuracy_std": 0.0,
                     "params": 1000 + i})
    fig = plot_scatter(rows, "params", "parameters", tmp_path / "p.png", "recipe")
    fig.canvas.draw()
    assert_labels_apart(fig, len(rows))
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(str(i + 1) for i in range(80))
    assert "80: a_module_with_a_name_far_too_long_to_fit_79" in " ".join(t.get_text() for t in fig.texts)
    plt.close(fig)
