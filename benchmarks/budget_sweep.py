"""How the gaps to the plain network move with the training budget: several ``visattn compare`` folders side by side.

    python benchmarks/budget_sweep.py "10k x 3=runs/a" "30k x 3=runs/b" [--out sweep.md]

Each argument is ``LABEL=FOLDER`` of one budget (the same recipe otherwise). For every variant in the folders:
the plain network's score and each variant's per-seed difference to it (mean ± std over the seeds both have,
as ``visattn compare`` reports it) with the verdict of ``visattn.stats`` (a two-sided paired t-test at 5%:
ahead / behind / level; none below three seeds), per budget. Between consecutive budgets: Spearman's rank
correlation of the mean differences over the variants both budgets ran, and how many of the variants with a
verdict at both keep it. Writes markdown (and the same as JSON next to it).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from visattn.stats import ALPHA, MIN_SEEDS, format_p
from visattn.train.compare import paired_delta, paired_test


def _board(folder: Path) -> tuple[str, dict, dict[str, dict]]:
    board = json.loads((folder / "leaderboard.json").read_text())
    rows = {r["label"]: r for r in board["rows"] if not r.get("group")}
    metric = "miou" if any("miou_mean" in r for r in rows.values()) else "accuracy"
    plain = next(r for r in rows.values() if r.get("plain"))
    return metric, plain, rows


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their average rank
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (nan for fewer than 3 pairs)."""
    if len(a) < 3:
        return float("nan")
    return statistics.correlation(_ranks(a), _ranks(b))


def _judged(delta: dict) -> bool:
    return delta["verdict"] in ("ahead", "behind", "level")


def _cell(d: dict) -> str:
    if d["seeds"] < 2:
        return f"{d['mean']:+.2f}"
    text = f"{d['mean']:+.2f} ± {d['std']:.2f}"
    return text + (f" ({d['verdict']}, {format_p(d['p'])})" if _judged(d) else f" ({d['seeds']} seeds)")


def sweep(budgets: list[tuple[str, Path]]) -> dict:
    columns = []
    for label, folder in budgets:
        metric, plain, rows = _board(folder)
        deltas = {}
        for name, row in rows.items():
            if row is plain:
                continue
            mean, std, n = paired_delta(row, plain, metric)
            test = paired_test(row, plain, metric)
            deltas[name] = {"mean": mean, "std": std, "seeds": n, "t": test.t if test else float("nan"),
                            "p": test.p if test else float("nan"), "verdict": test.verdict if test else "no seeds"}
        columns.append({"budget": label, "folder": str(folder), "metric": metric,
                        "plain": {"label": plain["label"], "mean": plain[f"{metric}_mean"],
                                  "std": plain[f"{metric}_std"], "seeds": plain["seeds"]},
                        "deltas": deltas})
    steps = []
    for before, after in zip(columns, columns[1:], strict=False):
        common = sorted(set(before["deltas"]) & set(after["deltas"]))
        a = [before["deltas"][k] for k in common]
        b = [after["deltas"][k] for k in common]
        judged = [(x, y) for x, y in zip(a, b, strict=True) if _judged(x) and _judged(y)]
        steps.append({"from": before["budget"], "to": after["budget"], "variants": len(common),
                      "spearman": spearman([d["mean"] for d in a], [d["mean"] for d in b]),
                      "judged": len(judged), "same_verdict": sum(x["verdict"] == y["verdict"] for x, y in judged)})
    return {"budgets": columns, "steps": steps}


def to_markdown(result: dict) -> str:
    cols = result["budgets"]
    metric = cols[0]["metric"]
    def first_delta(name: str) -> float:  # rows in the order of the first budget that ran them
        return next(c["deltas"][name]["mean"] for c in cols if name in c["deltas"])

    names = sorted({k for c in cols for k in c["deltas"]}, key=lambda k: -first_delta(k))
    lines = ["# How the differences to the plain network move with the budget", "",
             "`python benchmarks/budget_sweep.py " + " ".join(f'"{c["budget"]}={c["folder"]}"' for c in cols) + "`",
             "", "| variant | " + " | ".join(f"{c['budget']}: Δ" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    lines.append("| plain (" + metric + " %) | " + " | ".join(
        f"{c['plain']['mean']:.2f} ± {c['plain']['std']:.2f}" for c in cols) + " |")
    for name in names:
        cells = []
        for c in cols:
            d = c["deltas"].get(name)
            cells.append("" if d is None else _cell(d))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Δ: per-seed difference to the plain network, mean ± std over the seeds; in brackets the verdict "
              f"of a two-sided paired t-test of the per-seed Δ at the {ALPHA:.0%} level (ahead / behind when "
              f"p < {ALPHA:g}, level otherwise; none below {MIN_SEEDS} seeds). Between budgets:", ""]
    for s in result["steps"]:
        lines.append(f"- {s['from']} -> {s['to']}: {s['variants']} variants in both, Spearman rho of the mean Δ "
                     f"{s['spearman']:.2f}; {s['same_verdict']} of the {s['judged']} with a verdict at both keep it")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("budgets", nargs="+", metavar="LABEL=FOLDER")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (a .json twin is written beside it)")
    args = parser.parse_args()
    budgets = []
    for item in args.budgets:
        label, eq, folder = item.rpartition("=")
        if not eq or not label:
            parser.error(f"expected LABEL=FOLDER, got {item!r}")
        if not (Path(folder) / "leaderboard.json").is_file():
            parser.error(f"{folder}: no leaderboard.json (a `visattn compare` folder)")
        budgets.append((label, Path(folder)))
    result = sweep(budgets)
    text = to_markdown(result)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
