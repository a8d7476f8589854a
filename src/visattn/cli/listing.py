"""``visattn list``: the registered modules as a table or JSON (named ``listing`` to leave ``list`` alone)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..registry import ROLES, info, list_modules

__all__ = ["add_parser", "module_rows", "print_table"]


def module_rows(keys: Sequence[str]) -> list[dict]:
    """One row of facts per registry key (what ``list`` prints)."""
    rows = []
    for key in keys:
        m = info(key)
        rows.append({
            "key": key, "module": m.cls.__name__, "title": m.title, "paper": m.citation, "year": m.year,
            "role": m.role, "domain": m.domain, "complexity": m.complexity, "parameter_free": m.parameter_free,
        })
    return rows


def print_table(rows: list[dict], columns: Sequence[str]) -> None:
    """Print ``rows`` as left-aligned columns under a header and a rule."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def run(args: argparse.Namespace) -> int:
    rows = module_rows(list_modules(args.pattern, role=args.role))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            r["parameter_free"] = "yes" if r["parameter_free"] else ""
        print_table(rows, ["key", "module", "paper", "year", "role", "domain", "complexity", "parameter_free"])
        print(f"\n{len(rows)} modules")
    return 0


def add_parser(sub) -> None:
    """Add ``list`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("list", help="list the registered modules")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern on keys, e.g. 'c*'")
    p.add_argument("--role", choices=ROLES, help="only modules of this role")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
