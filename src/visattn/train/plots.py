"""Leaderboard plots: accuracy against parameters and against latency (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_leaderboard"]


def _scatter(rows: list[dict], x_key: str, x_label: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for r in rows:
        ax.errorbar(r[x_key], r["accuracy_mean"], yerr=r["accuracy_std"], fmt="o", capsize=3,
                    color="tab:red" if r["attention"] == "none" else "tab:blue")
        ax.annotate(r["label"], (r[x_key], r["accuracy_mean"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_leaderboard(out: Path, rows: list[dict]) -> list[Path]:
    """Write ``accuracy_vs_params.png`` (and ``accuracy_vs_latency.png`` when latency was measured)."""
    rows = [r for r in rows if not r.get("group")] or rows
    paths = [out / "accuracy_vs_params.png"]
    _scatter(rows, "params", "parameters", paths[0])
    if all("latency_cpu_ms" in r for r in rows):
        paths.append(out / "accuracy_vs_latency.png")
        _scatter(rows, "latency_cpu_ms", "CPU latency, batch 1 (ms, median)", paths[1])
    return paths
