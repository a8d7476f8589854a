"""``visattn info KEY[:ARG=VALUE...]``: one module's metadata, defaults and parameter count."""

from __future__ import annotations

import argparse
import json

from ..registry import info
from .common import CLIError, bounded, module_list

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    import visattn

    specs = module_list(args.key, flag="KEY")
    if len(specs) != 1:
        raise CLIError(f"one module at a time, got {len(specs)}: {args.key}")
    spec = specs[0]
    m = info(spec.key)
    kwargs = spec.kwargs_dict()
    if m.size_bound:
        kwargs.setdefault("feature_size", (args.size, args.size))
    try:
        module = visattn.create(spec.key, args.channels, **kwargs)
    except (ValueError, TypeError) as err:
        raise CLIError(f"{spec.text} at --channels {args.channels}: {err}") from None
    n_params = sum(p.numel() for p in module.parameters())
    fields = {
        "key": m.key, "class": f"{m.cls.__module__}.{m.cls.__name__}", "title": m.title, "paper": m.paper,
        "citation": m.citation, "arxiv": m.paper_url, "official code": m.code, "family": m.family,
        "domain": m.domain, "weights computed by": m.weights, "weights applied by": m.applied, "role": m.role,
        "complexity": m.complexity, "parameter-free": m.parameter_free, "size-bound": m.size_bound,
        "defaults": {k: repr(v) for k, v in m.defaults.items()},
        "arguments given": {k: repr(v) for k, v in spec.kwargs},
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


def add_parser(sub) -> None:
    """Add ``info`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("info", help="metadata, defaults and parameter count of one module")
    p.add_argument("key", metavar="KEY[:ARG=VALUE...]", help="registry key, with module arguments if wanted, "
                   "e.g. sge:groups=8")
    p.add_argument("--channels", type=bounded(int, 1), default=256, help="channels for the parameter count")
    p.add_argument("--size", type=bounded(int, 1), default=14, help="feature size for size-bound modules")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
