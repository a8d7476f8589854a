"""Redraw the plots (and the leaderboard.md) of ``visattn compare`` / ``visattn ablate`` folders from their results.

    python benchmarks/redraw_plots.py benchmarks/results/cluttered-compare [FOLDER ...] [--no-markdown]

Reads each folder's ``leaderboard.json`` (the rows and the recipe's config), nothing is trained or timed
again: the plots and the table show the recorded results with today's drawing and verdict rules. The table is
rewritten only where the rows carry per-seed scores and latency spreads (older boards keep their table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visattn.train.checkpoint import atomic_write_text
from visattn.train.compare import describe_recipe, leaderboard_markdown
from visattn.train.config import TrainConfig
from visattn.train.plots import plot_leaderboard


def redraw(folder: Path, *, markdown: bool = True) -> list[Path]:
    """Rewrite ``folder``'s plots (and leaderboard.md) from its leaderboard.json; returns the files written."""
    board = json.loads((folder / "leaderboard.json").read_text())
    base, rows = TrainConfig.from_dict(board["config"]), board["rows"]
    metric = "miou" if base.task == "segmentation" else "accuracy"
    written = plot_leaderboard(folder, rows, describe_recipe(base, max(r["seeds"] for r in rows)), metric,
                               "mIoU %" if metric == "miou" else "top-1 acc. %")
    current = all(r.get(f"{metric}_per_seed") and "latency_cpu_p10_ms" in r for r in rows)
    if markdown and current:  # an older board lacks what today's table states (per-seed Δ, latency spread)
        old = (folder / "leaderboard.md").read_text() if (folder / "leaderboard.md").is_file() else ""
        title = old.splitlines()[0].removeprefix("# ") if old.startswith("# ") else "Leaderboard"
        atomic_write_text(folder / "leaderboard.md", leaderboard_markdown(base, rows, title))
        written.append(folder / "leaderboard.md")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--no-markdown", action="store_true", help="redraw the plots only")
    args = parser.parse_args()
    for folder in args.folders:
        if not (folder / "leaderboard.json").is_file():
            parser.error(f"{folder}: no leaderboard.json (a `visattn compare` folder)")
    for folder in args.folders:
        for path in redraw(folder, markdown=not args.no_markdown):
            print(path)


if __name__ == "__main__":
    main()
