"""Leaderboard plots: the headline score (accuracy, mIoU) against parameters and latency (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_leaderboard"]


def _scatter(rows: list[dict], x_key: str, x_label: str, path: Path, metric: str, y_label: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for r in rows:
        baseline = r.get("head", r["attention"]) in ("none", "fcn")
        ax.errorbar(r[x_key], r[f"{metric}_mean"], yerr=r[f"{metric}_std"], fmt="o", capsize=3,
                    color="tab:red" if baseline else "tab:blue")
        ax.annotate(r["label"], (r[x_key], r[f"{metric}_mean"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_leaderboard(out: Path, rows: list[dict], metric: str = "accuracy",
                     metric_label: str = "top-1 accuracy (%)") -> list[Path]:
    """Write ``<metric>_vs_params.png`` (and ``<metric>_vs_latency.png`` when latency was measured)."""
    rows = [r for r in rows if not r.get("group")] or rows
    paths = [out / f"{metric}_vs_params.png"]
    _scatter(rows, "params", "parameters", paths[0], metric, metric_label)
    if all("latency_cpu_ms" in r for r in rows):
        paths.append(out / f"{metric}_vs_latency.png")
        _scatter(rows, "latency_cpu_ms", "CPU latency, batch 1 (ms, median)", paths[1], metric, metric_label)
    return paths
