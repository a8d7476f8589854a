"""Leaderboard plots (needs matplotlib): the score (accuracy, mIoU) against parameters and latency; ablation panels.

Every figure carries a title with the recipe (data set, budget, seeds) and says what its error bars are.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

from ..stats import ALPHA, MIN_SEEDS, PairedTest, paired_differences, paired_t_test
from .plot_labels import place_labels

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = ["plot_leaderboard", "plot_ablation", "plot_scatter", "plot_differences", "reference_row",
           "error_bar_note"]


def error_bar_note(rows: list[dict]) -> str:
    """What the error bars are, for a figure's caption."""
    seeds = max(r["seeds"] for r in rows)
    if seeds < 2:
        return "one seed per entry: no error bars"
    return f"error bars: ± 1 std over {seeds} seeds"


def _title(fig, headline: str, recipe: str, rows: list[dict]) -> None:
    text = headline + ("\n" + "\n".join(textwrap.wrap(recipe, 90)) if recipe else "") + f"\n({error_bar_note(rows)})"
    fig.suptitle(text, fontsize=8)


def _leading_digit(v: float) -> int:
    return int(f"{v:e}"[0]) if v > 0 else 0


def _short(v: float) -> str:
    """``60000`` -> ``60k``, ``1.2e6`` -> ``1.2M``, ``0.5`` -> ``0.5``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:g}{suffix}"
    return f"{v:g}"


def reference_row(rows: list[dict]) -> dict | None:
    """The row the others are compared with, as the leaderboard picks it: the plain network, else the U-Net."""
    return next((r for r in rows if r.get("plain", r.get("attention") == "none")),
                next((r for r in rows if r.get("head") == "unet"), None))


def _differences(rows: list[dict], reference: dict, metric: str) -> list[tuple[dict, list[float], PairedTest]]:
    """(row, per-seed differences to the reference, their paired test) for every row sharing seeds with it."""
    found = []
    for r in rows:
        if r is reference:
            continue
        diffs = paired_differences(r.get(f"{metric}_per_seed") or {}, reference.get(f"{metric}_per_seed") or {})
        if diffs:
            found.append((r, diffs, paired_t_test(diffs)))
    return sorted(found, key=lambda e: e[2].mean)


_VERDICT_COLOURS = {"ahead": "tab:green", "behind": "tab:red", "level": "0.35", "too few seeds": "0.6"}


def plot_differences(ax, rows: list[dict], reference: dict, metric: str = "accuracy") -> bool:
    """Sorted dot plot of each row's per-seed difference to ``reference``, on ``ax``.

    Seeds as circles, the mean as a diamond with its 95% t interval (which excludes 0 exactly when the paired
    t-test says ahead / behind at 5%), and a zero line; each row's tick label gives its verdict.

    Returns:
        False when no row shares a seed with the reference (nothing drawn).
    """
    entries = _differences(rows, reference, metric)
    if not entries:
        return False
    for i, (_, diffs, test) in enumerate(entries):
        colour = _VERDICT_COLOURS[test.verdict]
        ax.scatter(diffs, [i] * len(diffs), s=14, facecolors="none", edgecolors=colour, linewidths=0.8, zorder=3)
        if test.verdict != "too few seeds":
            lo, hi = test.interval(0.95)
            ax.errorbar(test.mean, i, xerr=[[test.mean - lo], [hi - test.mean]], fmt="D", color=colour, ms=5,
                        capsize=3, zorder=4)
        else:
            ax.plot(test.mean, i, "D", color=colour, mfc="white", ms=5, zorder=4)
    ax.axvline(0, color="black", lw=0.8, zorder=1)
    ax.set_yticks(range(len(entries)))
    ax.set_yticklabels([f"{r['label']}: {t.cell()}" for r, _, t in entries], fontsize=7)
    for tick, (_, _, test) in zip(ax.get_yticklabels(), entries, strict=True):
        tick.set_color(_VERDICT_COLOURS[test.verdict] if test.verdict in ("ahead", "behind") else "black")
    ax.set_ylim(-0.7, len(entries) - 0.3)
    name = "mIoU" if metric == "miou" else metric
    ax.set_xlabel(f"Δ {name} vs {reference['label']} (points)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"per-seed Δ to {reference['label']} (circles), mean (diamond) with its 95% t interval;\n"
                 f"verdict: paired t-test at {ALPHA:.0%}, none below {MIN_SEEDS} seeds", fontsize=7)
    return True


def plot_scatter(rows: list[dict], x_key: str, x_label: str, path: Path, recipe: str, metric: str = "accuracy",
                 y_label: str = "top-1 accuracy (%)") -> plt.Figure:
    """The score against ``x_key`` with no two labels overlapping; beside it, the sorted per-seed differences.

    The x axis is logarithmic when its values span more than a factor of 4 (one large model would otherwise
    squeeze all the others into one column).
    """
    reference = reference_row(rows)
    with_dots = reference is not None and bool(_differences(rows, reference, metric))
    # larger figures until the labels fit apart; at last numbers on the points and a key below the figure
    for grow, numbered in ((1.0, False), (1.35, False), (1.8, False), (1.8, True)):
        fig, axes = plt.subplots(1, 2 if with_dots else 1, figsize=((12.8 if with_dots else 6.4) * grow, 4.8 * grow),
                                 dpi=120, squeeze=False, gridspec_kw={"width_ratios": [3, 2]} if with_dots else None)
        ax = axes[0][0]
        errors = []
        for r in rows:
            err = r[f"{metric}_std"] if r["seeds"] > 1 else None
            errors.append(err)
            ax.errorbar(r[x_key], r[f"{metric}_mean"], yerr=err, fmt="o", capsize=3, ms=6,
                        color="tab:red" if r is reference else "tab:blue")
        xs = [r[x_key] for r in rows]
        if min(xs) > 0 and max(xs) > 4 * min(xs):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: _short(v) if _leading_digit(v) in (2, 3, 5)
                                                       else ""))
            x_label += ", log scale"
        ax.margins(0.12, 0.1)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if with_dots:
            plot_differences(axes[0][1], rows, reference, metric)
        name = y_label.split(" (")[0]  # "top-1 accuracy", "mIoU"
        _title(fig, f"{name[:1].upper() + name[1:] if name.islower() else name} against {x_label.split(',')[0]}",
               recipe, rows)
        labels = [str(i + 1) if numbered else str(r["label"]) for i, r in enumerate(rows)]
        if numbered:
            key = "; ".join(f"{i + 1}: {r['label']}" for i, r in enumerate(rows))
            fig.text(0.01, 0.01, "\n".join(textwrap.wrap(key, int(160 * grow))), fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.1, 1, 1) if numbered else None)
        ax.set_xlim(ax.get_xlim())  # labels are placed on the final layout: nothing may move afterwards
        ax.set_ylim(ax.get_ylim())
        try:
            place_labels(ax, [(r[x_key], r[f"{metric}_mean"]) for r in rows], labels, yerr=errors)
        except ValueError:
            if numbered:
                raise
            plt.close(fig)
            continue
        break
    fig.savefig(path)
    return fig


def plot_ablation(rows: list[dict], path: Path, recipe: str = "") -> plt.Figure:
    """One panel per ablation group: a point per setting with ± 1 std over seeds, the group's default in orange.

    Points, not bars: the y axis starts where the data do (a bar's length would claim a zero the axis does not
    show), and every panel says so. A dashed line marks the default setting's score across its panel.
    """
    groups = list(dict.fromkeys(r["group"] for r in rows if r["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 4.2), dpi=120, squeeze=False,
                             sharey=True)
    low = min(r["accuracy_mean"] - (r["accuracy_std"] if r["seeds"] > 1 else 0) for r in rows)
    high = max(r["accuracy_mean"] + (r["accuracy_std"] if r["seeds"] > 1 else 0) for r in rows)
    margin = max(0.2, 0.1 * (high - low))
    for ax, group in zip(axes[0], groups, strict=True):
        members = [r for r in rows if r["group"] == group]
        for x, r in enumerate(members):
            default = r["slug"] == r["attention"]  # the module's default setting, the reference of the group
            ax.errorbar(x, r["accuracy_mean"], yerr=r["accuracy_std"] if r["seeds"] > 1 else None,
                        fmt="D" if default else "o", ms=7 if default else 6, capsize=4,
                        color="tab:orange" if default else "tab:blue", mec="black", mew=0.6)
            if default:
                ax.axhline(r["accuracy_mean"], color="tab:orange", lw=0.8, ls="--", zorder=0)
        ax.set_xticks(range(len(members)), [str(r["label"]) for r in members], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(members) - 0.4)
        ax.set_title(group, fontsize=9)
        ax.set_ylim(low - margin, high + margin)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%; the axis does not start at 0)")
    _title(fig, "SE ablations, one panel per table of the SE paper (orange diamond and dashed line: the default "
           "setting)", recipe, rows)
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
                    plot_scatter(plain_rows, "params", "parameters", out / f"{metric}_vs_params.png", recipe, metric,
                             y_label)))
    if all("latency_cpu_ms" in r for r in plain_rows):
        figures.append((out / f"{metric}_vs_latency.png",
                        plot_scatter(plain_rows, "latency_cpu_ms", "CPU latency, batch 1 (ms, median)",
                                 out / f"{metric}_vs_latency.png", recipe, metric, y_label)))
    for _, fig in figures:
        plt.close(fig)
    return [path for path, _ in figures]
