"""``visattn compare``: several modules (or segmentation heads) with one recipe, ranked on a leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CLIError, check_out_dir, int_list, run_library
from .recipe import EPILOG, add_jobs_argument, add_recipe_arguments, base_config, interrupted

__all__ = ["add_parser", "run_comparison"]

#: What ``visattn compare`` compares when no --attention is given.
DEFAULT_MODULES = "none,se,eca,cbam,coord,simam"


def run_comparison(args: argparse.Namespace, variants) -> int:
    """Train ``variants`` with the recipe of ``args`` into ``args.out``, then print the leaderboard."""
    from ..train.compare import compare

    check_out_dir(args.out)
    base = base_config(args)
    try:
        run_library(lambda: compare(base, variants, args.seeds, args.out, progress=not args.quiet, jobs=args.jobs))
    except KeyboardInterrupt:
        return interrupted(args, args.out, "compare")
    print(Path(args.out, "leaderboard.md").read_text())
    print(f"written: {args.out}/leaderboard.md, {args.out}/leaderboard.json and plots")
    return 0


def _variants(args: argparse.Namespace):
    from ..train.compare import parse_head_variants, parse_variants

    flag, text, parse = (("--head", args.head, parse_head_variants) if args.task == "segmentation" else
                         ("--attention", args.attention, parse_variants))
    try:
        return parse(text)
    except ValueError as err:
        raise CLIError(f"{flag}: {err}") from None


def run(args: argparse.Namespace) -> int:
    return run_comparison(args, _variants(args))


def add_parser(sub) -> None:
    """Add ``compare`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("compare", help="train several modules (or segmentation heads) with one recipe and rank them",
                       epilog=EPILOG)
    p.add_argument("--attention", default=DEFAULT_MODULES, metavar="KEY[:ARG=VALUE...],...",
                   help="comma-separated modules, 'none' for the plain backbone, KEY:ARG=VALUE for module "
                   "arguments (e.g. none,se,sge:groups=8)")
    p.add_argument("--head", default="fcn,nonlocal,cc,danet", metavar="HEAD[:ARG=VALUE...],...",
                   help="segmentation: comma-separated heads, HEAD:ARG=VALUE for module arguments")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma-separated seeds, e.g. 1,2,3")
    p.add_argument("--out", default="runs/compare", help="folder of the runs and the leaderboard")
    add_jobs_argument(p)
    add_recipe_arguments(p)
    p.set_defaults(func=run)
