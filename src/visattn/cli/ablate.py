"""``visattn ablate``: the SE paper's ablations (squeeze, excitation, ratio, integration)."""

from __future__ import annotations

import argparse

from .common import CLIError, int_list, module_list, run_library
from .compare import run_comparison
from .recipe import add_jobs_argument, add_recipe_arguments

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    from ..train.compare import ablation_variants

    specs = module_list(args.key, flag="KEY")
    spec = specs[0]
    if len(specs) != 1 or spec.kwargs:
        raise CLIError(f"ablate takes one key alone (it varies the module's own arguments), got {args.key}")
    return run_comparison(args, run_library(lambda: ablation_variants(spec.key)))


def add_parser(sub) -> None:
    """Add ``ablate`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("ablate", help="the SE paper's ablations (squeeze, excitation, ratio, integration)")
    p.add_argument("key", nargs="?", default="se", metavar="KEY", help="the module whose paper's ablations to "
                   "run (only se has them)")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma-separated seeds, e.g. 1,2,3")
    p.add_argument("--out", default="runs/ablate-se", help="folder of the runs and the leaderboard")
    add_jobs_argument(p)
    add_recipe_arguments(p)
    p.set_defaults(func=run)
