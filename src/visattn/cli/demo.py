"""``visattn demo``: what ``make demo`` runs (the work is in :mod:`visattn.demo`)."""

from __future__ import annotations

import argparse

from .common import bounded, check_out_dir, run_library

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    check_out_dir(args.out)
    failed = run_library(lambda: run_demo(data_dir=args.data_dir, epochs=args.epochs, train_limit=args.train_limit,
                                          val_limit=args.val_limit, out=args.out, jobs=args.jobs))
    return 1 if failed else 0


def add_parser(sub) -> None:
    """Add ``demo`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("demo", help="the main job on Fashion-MNIST (what `make demo` runs)")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST idx .gz files, used exactly as given "
                   "(default: $VISATTN_DATA, else searched)")
    p.add_argument("--epochs", type=bounded(int, 1), default=3, help="epochs per run")
    p.add_argument("--train-limit", type=bounded(int, 1), default=10000, help="training images per run")
    p.add_argument("--val-limit", type=bounded(int, 1), default=2000, help="test images per run")
    p.add_argument("--out", default="runs/demo", help="where the runs and the leaderboard go")
    p.add_argument("--jobs", type=bounded(int, 1), default=None, help="training runs at once (default: 2 on a "
                   "CPU-only machine with 2+ cores, one thread each; else 1)")
    p.set_defaults(func=run)
