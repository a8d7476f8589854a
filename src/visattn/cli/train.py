"""``visattn train``: one run, a backbone with an attention module or a segmentation head."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CLIError, bounded, check_out_dir, module_list, run_library
from .recipe import EPILOG, add_recipe_arguments, base_config, interrupted

__all__ = ["add_parser"]


def _arg_value(text: str) -> str:
    """``--attention-kw ARG=VALUE``, kept as written: the module grammar parses and checks it."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected ARG=VALUE, got {text!r}")
    return text.strip()


def _train_module(args: argparse.Namespace):
    """``--attention KEY[:ARG=VALUE]`` plus any ``--attention-kw ARG=VALUE``, checked as one module spec."""
    text = args.attention or "none"
    if args.attention_kw:
        text = ":".join([text, *args.attention_kw])
    specs = module_list(text, allow_none=True)
    if len(specs) != 1:
        raise CLIError(f"--attention: train takes one module, got {len(specs)} ({args.attention}); "
                       "use `visattn compare` for several")
    return specs[0]


def _head(text: str):
    from ..train.compare import parse_head_variants

    try:
        heads = parse_head_variants(text)
    except ValueError as err:
        raise CLIError(f"--head: {err}") from None
    if len(heads) != 1:
        raise CLIError(f"--head: train takes one head, got {len(heads)} ({text}); use `visattn compare` for several")
    return heads[0]


def _check_position(position: str, attention: str | None) -> None:
    """``--position`` moves a module inside each residual block: refused for modules placed elsewhere."""
    if position == "standard":
        return
    if attention is None:
        raise CLIError(f"--position {position} places the --attention module: give one (e.g. --attention se)")
    from ..registry import info

    placement = info(attention).placement
    if placement != "every_block":
        raise CLIError(f"--position {position}: {attention} is placed {placement.replace('_', ' ')}, not in every "
                       "residual block; --position applies to per-block modules only")


def _check_out_outside_data(out: str, data_dir: str | None) -> None:
    """A run folder inside the data folder would be read back as data (an extra class folder, say)."""
    if data_dir is None:
        return
    data, target = Path(data_dir).resolve(), Path(out).resolve()
    if target == data or data in target.parents:
        raise CLIError(f"--out {out} lies inside --data-dir {data_dir}; put the run folder elsewhere")


def _check_epoch_budget(out: str, epochs: int, force: bool) -> None:
    """More epochs on a saved run restarts its learning-rate schedule: only with ``--force``."""
    saved = Path(out) / "config.json"
    if force or not saved.is_file():
        return
    try:
        before = int(json.loads(saved.read_text()).get("epochs", epochs))
    except (OSError, ValueError, TypeError):
        return  # the trainer reports an unreadable folder
    if before < epochs:
        raise CLIError(f"{out} holds a {before}-epoch run; --epochs {epochs} would go on with a fresh learning-rate "
                       "schedule over the new epochs. Add --force to do that, or use another --out")


def run(args: argparse.Namespace) -> int:
    from ..train.trainer import train

    spec = _train_module(args)
    attention = None if spec.key == "none" else spec.key
    if attention is None and (args.where or args.replace):
        raise CLIError("--where / --replace place the --attention module: give one (e.g. --attention cbam)")
    if args.task != "segmentation" and args.head is not None:
        raise CLIError("--head is a segmentation option (--task segmentation); a classification run has its "
                       "backbone's own classifier")
    if args.task != "segmentation":
        _check_position(args.position, attention)
    extra, module_kwargs = {}, spec.kwargs_dict()
    if args.task == "segmentation":  # the head's own arguments (danet:branch_loss_weight=0) travel as module ones
        head = _head(args.head or "fcn")
        extra["head"], module_kwargs = head.head, dict(head.attention_kwargs)
    config = base_config(args, attention=attention, position=args.position, attention_kwargs=module_kwargs,
                         seed=args.seed, **extra)
    name = config.head if config.task == "segmentation" else config.attention or "none"
    out = args.out or f"runs/{config.backbone.replace(':', '-')}-{name}-{config.digest()}"
    check_out_dir(out)
    _check_out_outside_data(out, config.data_dir)
    _check_epoch_budget(out, config.epochs, args.force)
    try:
        run_library(lambda: train(config, out, progress=not args.quiet, tensorboard=args.tensorboard))
    except KeyboardInterrupt:
        return interrupted(args, out, "train")
    print(f"run folder: {out}")
    return 0


def add_parser(sub) -> None:
    """Add ``train`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("train", help="train a backbone with an attention module, or a segmentation head",
                       epilog=EPILOG)
    p.add_argument("--attention", default="none", metavar="KEY[:ARG=VALUE...]",
                   help="the module, with its arguments if wanted (e.g. se:reduction=8), or none")
    p.add_argument("--position", default="standard", choices=("standard", "pre", "post", "identity"),
                   help="where the module sits in each residual block")
    p.add_argument("--attention-kw", type=_arg_value, action="append", default=[], metavar="ARG=VALUE",
                   help="module argument, repeatable (the same as KEY:ARG=VALUE; e.g. --attention-kw reduction=8)")
    p.add_argument("--head", default=None, help="segmentation: decode head, default fcn (fcn, nonlocal, cc, danet, "
                   "oc, asp_oc, psa, ema, mhsa, transformer, sanet, strip) or unet / attention_unet")
    p.add_argument("--seed", type=bounded(int, float("-inf"), what="an integer"), default=0,
                   help="seed of weights, order and augmentation")
    p.add_argument("--out", default=None, help="run folder (default runs/<backbone>-<attention>-<hash>)")
    p.add_argument("--force", action="store_true",
                   help="go on with a saved run for more --epochs than it was given (its schedule restarts)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files to OUT/tensorboard "
                   "(needs the tensorboard package; steps.csv / metrics.csv are always written)")
    add_recipe_arguments(p)
    p.set_defaults(func=run)
