"""``visattn predict RUN IMAGE...``: a finished run's top-k classes (segmentation: palette masks)."""

from __future__ import annotations

import argparse
import json

from .common import bounded, run_library

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    from ..predict import predict_images, segment_images
    from ..train.run import load_run

    opened = run_library(lambda: load_run(args.run))
    if opened.config.task == "segmentation":
        written = run_library(lambda: segment_images(opened, args.images, args.out or f"{args.run}/masks"))
        pairs = [{"image": str(i), "mask": str(m)} for i, m in zip(args.images, written, strict=True)]
        print(json.dumps(pairs) if args.json else "\n".join(f"{p['image']}: {p['mask']}" for p in pairs))
        return 0
    results = run_library(lambda: predict_images(opened, args.images, topk=args.topk))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(f"{result['image']}: " + ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"]))
    return 0


def add_parser(sub) -> None:
    """Add ``predict`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("predict", help="classify image files with a finished run (segmentation: write masks)")
    p.add_argument("run", metavar="RUN", help="a run folder written by `visattn train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--topk", type=bounded(int, 1), default=5, help="classes to list per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON: each image with class, index and probability")
    p.add_argument("--out", default=None, help="segmentation: folder of the palette PNG masks (default RUN/masks)")
    p.set_defaults(func=run)
