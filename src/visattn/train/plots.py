"""Leaderboard plots (needs matplotlib): the score (accuracy, mIoU) against parameters and latency; ablation panels.

Every figure carries a title with the recipe (data set, budget, seeds) and says what its error bars are.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_leaderboard", "plot_ablation", "error_bar_note"]


def error_bar_note(rows: list[dict]) -> str:
    """What the error bars are, for a figure's caption."""
    seeds = max(r["seeds"] for r in rows)
    if seeds < 2:
        return "one seed per entry: no error bars"
    return f"error bars: ± 1 std over {seeds} seeds"


def _title(fig, headline: str, recipe: str, rows: list[dict]) -> None:
    text = headline + ("\n" + "\n".join(textwrap.wrap(recipe, 90)) if recipe else "") + f"\n({error_bar_note(rows)})"
    fig.suptitle(text, fontsize=8)


def _scatter(rows: list[dict], x_key: str, x_label: str, path: Path, recipe: str, metric: str = "accuracy",
             y_label: str = "top-1 accuracy (%)") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for r in rows:
        ax.errorbar(r[x_key], r[f"{metric}_mean"], yerr=r[f"{metric}_std"] if r["seeds"] > 1 else None, fmt="o",
                    capsize=3, color="tab:red" if r.get("plain", r["attention"] == "none") else "tab:blue")
        ax.annotate(r["label"], (r[x_key], r[f"{metric}_mean"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    name = y_label.split(" (")[0]  # "top-1 accuracy", "mIoU"
    _title(fig, f"{name[:1].upper() + name[1:] if name.islower() else name} against {x_label.split(',')[0]}",
           recipe, rows)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def plot_ablation(rows: list[dict], path: Path, recipe: str = "") -> plt.Figure:
    """One panel per ablation group: a bar per setting with ± 1 std over seeds, the group's default hatched."""
    groups = list(dict.fromkeys(r["group"] for r in rows if r["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 4.2), dpi=120, squeeze=False,
                             sharey=True)
    low = min(r["accuracy_mean"] - r["accuracy_std"] for r in rows)
    high = max(r["accuracy_mean"] + r["accuracy_std"] for r in rows)
    margin = max(0.5, 0.15 * (high - low))
    for ax, group in zip(axes[0], groups, strict=True):
        members = [r for r in rows if r["group"] == group]
        xs = range(len(members))
        bars = ax.bar(xs, [r["accuracy_mean"] for r in members],
                      yerr=[r["accuracy_std"] if r["seeds"] > 1 else 0 for r in members]
                      if any(r["seeds"] > 1 for r in members) else None, capsize=4,
                      color="tab:blue", edgecolor="black", linewidth=0.6)
        for bar, r in zip(bars, members, strict=True):
            if r["slug"] == r["attention"]:  # the module's default setting, the reference of the group
                bar.set_hatch("//")
                bar.set_facecolor("tab:orange")
        ax.set_xticks(list(xs), [str(r["label"]) for r in members], rotation=30, ha="right", fontsize=8)
        ax.set_title(group, fontsize=9)
        ax.set_ylim(low - margin, high + margin)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%)")
    _title(fig, "SE ablations, one panel per table of the SE paper (hatched: the default setting)", recipe, rows)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def plot_leaderboard(out: Path, rows: list[dict], recipe: str = "", metric: str = "accuracy",
                     metric_title: str = "top-1 acc. %") -> list[Path]:
    """Write ``<metric>_vs_params.png``, ``<metric>_vs_latency.png`` and, for an ablation, ``ablation.png``.

    The latency plot needs measured latencies; the ablation plot has one panel per group.

    Args:
        out: the folder.
        rows: leaderboard rows (:func:`visattn.train.compare.leaderboard_rows`).
        recipe: one line naming data set, budget and seeds, put in every title.
        metric: the rows' score (``accuracy``, or ``miou`` for segmentation).
        metric_title: its column title (``top-1 acc. %``, ``mIoU %``).
    """
    y_label = "top-1 accuracy (%)" if metric == "accuracy" else f"{metric_title.split()[0]} (%)"
    figures = []
    if any(r["group"] for r in rows):
        figures.append((out / "ablation.png", plot_ablation(rows, out / "ablation.png", recipe)))
    plain_rows = [r for r in rows if not r.get("group")] or list({r["slug"]: r for r in rows}.values())
    figures.append((out / f"{metric}_vs_params.png",
                    _scatter(plain_rows, "params", "parameters", out / f"{metric}_vs_params.png", recipe, metric,
                             y_label)))
    if all("latency_cpu_ms" in r for r in plain_rows):
        figures.append((out / f"{metric}_vs_latency.png",
                        _scatter(plain_rows, "latency_cpu_ms", "CPU latency, batch 1 (ms, median)",
                                 out / f"{metric}_vs_latency.png", recipe, metric, y_label)))
    for _, fig in figures:
        plt.close(fig)
    return [path for path, _ in figures]
