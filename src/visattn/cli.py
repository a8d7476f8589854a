"""The ``visattn`` command. It only parses arguments and calls the library.

Sub-commands: ``list``, ``info``, ``demo`` here; ``bench``, ``train``, ``compare``, ``ablate`` and
``show`` are contributed by their packages through ``add_parser(subparsers)`` functions, so this
file stays a thin table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from . import __version__
from .registry import ROLES, info, list_modules

#: sub-command providers: module path -> each exposes add_parser(subparsers)
_PROVIDERS = ("visattn.bench.cli", "visattn.train.cli", "visattn.viz.cli")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _module_rows(keys: Sequence[str]) -> list[dict]:
    rows = []
    for key in keys:
        m = info(key)
        rows.append({
            "key": key, "module": m.cls.__name__, "title": m.title, "paper": m.citation, "year": m.year,
            "role": m.role, "domain": m.domain, "complexity": m.complexity, "parameter_free": m.parameter_free,
        })
    return rows


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _module_rows(list_modules(args.pattern, role=args.role))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            r["parameter_free"] = "yes" if r["parameter_free"] else ""
        _print_table(rows, ["key", "module", "paper", "year", "role", "domain", "complexity", "parameter_free"])
        print(f"\n{len(rows)} modules")
    return 0


def _lookup(key: str):
    try:
        return info(key)
    except KeyError as err:
        raise CLIError(err.args[0]) from None


def cmd_info(args: argparse.Namespace) -> int:
    import visattn

    m = _lookup(args.key)
    kwargs = {}
    if m.size_bound:
        kwargs["feature_size"] = (args.size, args.size)
    module = visattn.create(args.key, args.channels, **kwargs)
    n_params = sum(p.numel() for p in module.parameters())
    fields = {
        "key": m.key, "class": f"{m.cls.__module__}.{m.cls.__name__}", "title": m.title, "paper": m.paper,
        "citation": m.citation, "arxiv": m.paper_url, "official code": m.code, "family": m.family,
        "domain": m.domain, "weights computed by": m.weights, "weights applied by": m.applied, "role": m.role,
        "complexity": m.complexity, "parameter-free": m.parameter_free, "size-bound": m.size_bound,
        "defaults": {k: repr(v) for k, v in m.defaults.items()},
        f"parameters at C={args.channels}": n_params, "paper vs official code": m.note,
    }
    if args.json:
        print(json.dumps(fields, indent=2, default=str))
        return 0
    width = max(len(k) for k in fields)
    for k, v in fields.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "-"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        print(f"{k.rjust(width)}  {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visattn", description="Visual attention modules: list, inspect, "
                                     "benchmark, train, compare and show them.")
    parser.add_argument("--version", action="version", version=f"visattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list the registered modules")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern on keys, e.g. 'c*'")
    p.add_argument("--role", choices=ROLES, help="only modules of this role")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="metadata, defaults and parameter count of one module")
    p.add_argument("key")
    p.add_argument("--channels", type=_positive_int, default=256, help="channels for the parameter count")
    p.add_argument("--size", type=_positive_int, default=14, help="feature size for size-bound modules")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="the main job on Fashion-MNIST (what `make demo` runs)")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST idx .gz files")
    p.add_argument("--epochs", type=_positive_int, default=3)
    p.add_argument("--train-limit", type=_positive_int, default=10000, help="training images per run")
    p.add_argument("--val-limit", type=_positive_int, default=2000, help="test images per run")
    p.add_argument("--out", default="runs/demo", help="where the runs and the leaderboard go")
    p.add_argument("--jobs", type=_positive_int, default=None, help="training runs at once (default: 2 on a "
                   "CPU-only machine with 2+ cores, one thread each; else 1)")
    p.set_defaults(func=cmd_demo)

    for provider in _PROVIDERS:
        try:
            mod = importlib.import_module(provider)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("visattn"):
                continue  # that tool is not built yet
            raise
        mod.add_parser(sub)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visattn`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"visattn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

