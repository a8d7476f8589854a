"""Re-render committed ``leaderboard.md`` files under benchmarks/results from their ``leaderboard.json``.

The JSON holds the runs' per-seed results; the Markdown is derived from it by
``visattn.train.compare.leaderboard_markdown``. Re-rendering after the leaderboard's format changes (for
example the verdict column of the paired t-test) keeps the committed tables in step with what ``visattn compare``
writes today, without re-training anything. ``--check`` exits 1 when a file would change. Name the folders: leaderboards
written by older versions of compare (other column names, another reference) are left as they were made.

    python scripts/gen_leaderboards.py [--check] benchmarks/results/cluttered-compare ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visattn.train.compare import leaderboard_markdown
from visattn.train.config import TrainConfig

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def rendered(path: Path) -> str:
    """The Markdown of the leaderboard whose JSON is ``path``, with the title its current Markdown has."""
    data = json.loads(path.read_text())
    md = path.with_suffix(".md")
    title = md.read_text().splitlines()[0].removeprefix("# ") if md.exists() else "Leaderboard"
    return leaderboard_markdown(TrainConfig.from_dict(data["config"]), data["rows"], title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file would change (write nothing)")
    parser.add_argument("folders", nargs="+", type=Path, help="result folders holding a leaderboard.json")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(folder.resolve() / "leaderboard.json" for folder in args.folders):
        md, text = path.with_suffix(".md"), rendered(path)
        if not md.exists() or md.read_text() != text:
            stale.append(md)
            if not args.check:
                md.write_text(text)
    for md in stale:
        print(f"{'stale' if args.check else 'updated'} {md.relative_to(RESULTS.parent.parent)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
