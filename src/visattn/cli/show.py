"""``visattn show``: argument parsing only (the work is in :mod:`visattn.viz.show`)."""

from __future__ import annotations

import argparse

from .common import CLIError, add_device_argument, add_quiet_argument, bounded, check_out_dir, module_list

__all__ = ["add_parser"]


def _query(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected y,x (two integers), got {text!r}") from None
    return y, x


def _modules(text: str | None) -> list[str] | None:
    """``--modules`` in the module grammar; show draws what the run trained, so keys only, no arguments."""
    if text is None:
        return None
    specs = module_list(text, patterns=True, flag="--modules")
    given = [s.text for s in specs if s.kwargs]
    if given:
        raise CLIError(f"--modules {given[0]}: show draws the run's own modules; give keys without arguments")
    return [s.key for s in specs]


def run(args: argparse.Namespace) -> int:
    from ..viz.show import ShowError, show_run

    modules = _modules(args.modules)
    check_out_dir(args.out)
    try:
        show_run(args.run_dir, args.out, images=args.images, classes=args.classes, query=args.query,
                 data_dir=args.data_dir, limit=args.limit, device=args.device, gradcam_layer=args.gradcam_layer,
                 modules=modules, log=(lambda *a, **k: None) if args.quiet else print,
                 scale=args.scale, epoch=args.epoch)
    except ShowError as err:
        raise CLIError(str(err)) from None
    return 0


def add_parser(subparsers) -> None:
    """Add ``show`` to the ``visattn`` sub-parsers."""
    p = subparsers.add_parser(
        "show", help="attention maps of a trained run as pictures, with Grad-CAM, on an HTML page",
        description="Draw what the attention modules of a trained run weigh on test images (spatial maps over "
        "the input, channel weights by class, context attention of a query pixel, a spatial transformer's "
        "sampling window on the input and its output) beside Grad-CAM, "
        "into PNG files and an index.html that opens in a browser.")
    p.add_argument("run_dir", help="a folder written by `visattn train` (config.json, checkpoints/)")
    p.add_argument("--images", type=bounded(int, 1), default=4, help="how many test images to draw (default 4)")
    p.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                   help="only images of these classes: names or indices, e.g. --classes Sandal 9 or Bag,Coat")
    p.add_argument("--query", type=_query, default=None, metavar="Y,X",
                   help="query pixel (input-image coordinates) for context modules' attention; default the centre")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/show, RUN_DIR/show-epochNNN with "
                   "--epoch)")
    p.add_argument("--epoch", type=bounded(int, 1), default=None, metavar="N", help="draw the checkpoint of epoch N "
                   "(a run trained with --keep-checkpoints 0 keeps every epoch's) (default: the newest)")
    p.add_argument("--data-dir", default=None, help="data folder, when not where the run found it")
    p.add_argument("--limit", type=bounded(int, 1), default=None,
                   help="average channel weights over the first N test images (default: the run's val limit)")
    p.add_argument("--modules", default=None, metavar="KEY,...",
                   help="draw only the modules with these keys (the module grammar's keys, patterns allowed, e.g. "
                   "cbam or 'c*') (default: every module of the run)")
    add_device_argument(p)
    add_quiet_argument(p)
    p.add_argument("--gradcam-layer", default=None, metavar="NAME",
                   help="module explained by Grad-CAM (default: the last convolutional stage, e.g. layer3)")
    p.add_argument("--scale", choices=("layer", "image"), default="layer",
                   help="colour range of the maps: 'layer' (default): one range per layer over the drawn images, "
                   "so a nearly flat map looks flat; 'image': each map on its own min-max")
    p.set_defaults(func=run)
