"""`visattn train`, `visattn compare` and `visattn ablate`: argument parsing only."""

from __future__ import annotations

import argparse
import ast
import sys

from ..data.loader import DATASETS
from ..data.segmentation import SEG_DATASETS
from .config import SCHEDULES, TrainConfig

__all__ = ["add_parser", "DEMO_MODULES"]

#: What `make demo` compares.
DEMO_MODULES = ("none", "se", "eca", "cbam", "coord", "simam")


def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value  # a bare word: a string such as gate_layer=tanh
    return key.strip(), parsed


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _recipe_arguments(p: argparse.ArgumentParser, epochs: int = 1) -> None:
    g = p.add_argument_group("recipe")
    g.add_argument("--task", choices=("classification", "segmentation"), default="classification",
                   help="classification (default) or segmentation (a decode head, see --head)")
    g.add_argument("--backbone", default=None, help="e.g. resnet20, resnet56, resnet18 (default resnet20); "
                   "segmentation: tiny, resnet18, resnet50, resnet101 (dilated; default tiny)")
    g.add_argument("--dataset", default=None, choices=DATASETS + SEG_DATASETS,
                   help="default fashion-mnist (segmentation: fashion-scenes)")
    g.add_argument("--data-dir", default=None, help="data folder (Fashion-MNIST idx files, a CIFAR python folder, "
                   "an ImageFolder tree with train/ and val/; segmentation: a VOC2012 folder, or classes.txt + "
                   "images/{train,val}/ + masks/{train,val}/)")
    g.add_argument("--epochs", type=_positive(int), default=epochs)
    g.add_argument("--batch-size", type=_positive(int), default=None, help="default 128 (segmentation: 16)")
    g.add_argument("--lr", type=_positive(float), default=None, help="default 0.1 (segmentation: 0.01)")
    g.add_argument("--schedule", choices=SCHEDULES, default=None, help="default onecycle (segmentation: poly, "
                   "power 0.9)")
    g.add_argument("--wd", type=float, default=5e-4, help="weight decay (not on norms and biases)")
    g.add_argument("--train-limit", type=_positive(int), default=None, help="use only the first N training images")
    g.add_argument("--val-limit", type=_positive(int), default=None, help="use only the first N test images")
    g.add_argument("--image-size", type=_positive(int), default=32, help="resize ImageFolder images to this size")
    g.add_argument("--crop-pad", type=int, default=None, help="random-crop padding in pixels, 0 for none "
                   "(default: 4 for CIFAR and ImageFolder, 0 for Fashion-MNIST, where flips alone train best in "
                   "short runs)")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    g.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda")
    g.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    s = p.add_argument_group("segmentation")
    s.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=8, help="dilated backbone (default 8)")
    s.add_argument("--no-aux", action="store_true", help="no auxiliary FCN head on stage 3 (loss weight 0.4)")
    s.add_argument("--scene-size", type=_positive(int), default=64, help="Fashion-MNIST scene side (default 64)")
    s.add_argument("--crop-size", type=_positive(int), default=512, help="training crop of folder data (default 512)")
    s.add_argument("--workers", type=int, default=2, help="DataLoader processes for folder data (default 2)")
    s.add_argument("--head-lr-mult", type=_positive(float), default=1.0, help="learning-rate multiplier of the "
                   "decode head, whose zero-initialised residual scales otherwise grow slowly (PyTorch-Encoding, "
                   "DANet's code base, trains head and auxiliary layer at 10; default 1, the papers' text)")


def _jobs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=_positive(int), default=1, help="CPU runs to train at once, each with its share "
                   "of the threads (default 1; on a 2-core machine --jobs 2 finishes a comparison sooner)")


def _base_config(args: argparse.Namespace, **extra) -> TrainConfig:
    seg = args.task == "segmentation"
    if seg and args.dataset in DATASETS or not seg and args.dataset in SEG_DATASETS:
        raise ValueError(f"--dataset {args.dataset} is not a {args.task} data set; choose from "
                         f"{', '.join(SEG_DATASETS if seg else DATASETS)}")

    def pick(value, classification, segmentation):
        return value if value is not None else (segmentation if seg else classification)

    return TrainConfig(backbone=pick(args.backbone, "resnet20", "tiny"),
                       dataset=pick(args.dataset, "fashion-mnist", "fashion-scenes"), data_dir=args.data_dir,
                       epochs=args.epochs, batch_size=pick(args.batch_size, 128, 16), lr=pick(args.lr, 0.1, 0.01),
                       schedule=pick(args.schedule, "onecycle", "poly"), weight_decay=args.wd,
                       train_limit=args.train_limit, val_limit=args.val_limit, image_size=args.image_size,
                       amp=args.amp, channels_last=args.channels_last, compile=args.compile, device=args.device,
                       pad=args.crop_pad, flip=not args.no_flip, task=args.task, output_stride=args.output_stride,
                       aux=not args.no_aux, scene_size=args.scene_size, crop_size=args.crop_size,
                       workers=args.workers, head_lr_mult=args.head_lr_mult, **extra)


def _check_attention(keys) -> None:
    from ..cli import CLIError
    from ..registry import info

    for key in keys:
        if key in (None, "none"):
            continue
        try:
            info(key)
        except KeyError as err:
            raise CLIError(err.args[0]) from None


def _run(fn):
    """Turn the library's user-facing errors into one-line CLI errors (exit 2)."""
    from ..cli import CLIError
    from ..data import DatasetNotFoundError
    from ..data.idx import IdxFormatError
    from .trainer import ConfigMismatchError

    try:
        return fn()
    except (DatasetNotFoundError, IdxFormatError, ConfigMismatchError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    except (ValueError, TypeError, KeyError) as err:
        message = err.args[0] if err.args else repr(err)
        raise CLIError(message) from None


def _check_head(names) -> None:
    from ..cli import CLIError
    from ..segmentation import list_heads

    for name in names:
        if name not in list_heads():
            raise CLIError(f"unknown segmentation head {name!r}; choose from {', '.join(list_heads())}")


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import train

    _check_attention([args.attention])
    extra = {}
    if args.task == "segmentation":
        _check_head([args.head])
        extra["head"] = args.head
    config = _run(lambda: _base_config(args, attention=args.attention, position=args.position,
                                       attention_kwargs=dict(args.attention_kw), seed=args.seed, **extra))
    name = config.head if config.task == "segmentation" else config.attention or "none"
    out = args.out or f"runs/{config.backbone}-{name}-{config.digest()}"
    _run(lambda: train(config, out, progress=not args.no_progress))
    print(f"run folder: {out}")
    return 0


def _print_leaderboard(out: str) -> None:
    from pathlib import Path

    print(Path(out, "leaderboard.md").read_text())
    print(f"written: {out}/leaderboard.md, {out}/leaderboard.json and plots")


def _variant(token: str):
    """``key`` or ``key:arg=value[:arg=value]`` (e.g. ``sge:groups=8``) -> a comparison entry."""
    from ..cli import CLIError
    from .compare import Variant

    key, *settings = token.split(":")
    try:
        kwargs = tuple(_kv(item) for item in settings)
    except argparse.ArgumentTypeError as err:
        raise CLIError(f"--attention {token}: {err}") from None
    return Variant(token, None if key == "none" else key, attention_kwargs=kwargs)


def _head_variant(token: str):
    """``head`` or ``head:arg=value`` (e.g. ``cc:recurrence=1``) -> a segmentation comparison entry."""
    from ..cli import CLIError
    from .compare import Variant

    name, *settings = token.split(":")
    _check_head([name])
    try:
        kwargs = tuple(_kv(item) for item in settings)
    except argparse.ArgumentTypeError as err:
        raise CLIError(f"--head {token}: {err}") from None
    return Variant(token, None, attention_kwargs=kwargs, head=name)


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    if args.task == "segmentation":
        variants = [_head_variant(token.strip()) for token in args.head.split(",") if token.strip()]
    else:
        variants = [_variant(token.strip()) for token in args.attention.split(",") if token.strip()]
    _check_attention([v.attention for v in variants])
    base = _run(lambda: _base_config(args))
    _run(lambda: compare(base, variants, args.seeds, args.out, progress=not args.no_progress, jobs=args.jobs))
    _print_leaderboard(args.out)
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .compare import ablation_variants, compare

    variants = _run(lambda: ablation_variants(args.key))
    base = _run(lambda: _base_config(args))
    _run(lambda: compare(base, variants, args.seeds, args.out, progress=not args.no_progress, jobs=args.jobs))
    _print_leaderboard(args.out)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a backbone with an attention module")
    p.add_argument("--attention", default=None, help="registry key, or none")
    p.add_argument("--position", default="standard", choices=("standard", "pre", "post", "identity"))
    p.add_argument("--attention-kw", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="module argument, repeatable (e.g. --attention-kw reduction=8)")
    p.add_argument("--head", default="fcn", help="segmentation: decode head (fcn, nonlocal, cc, danet, oc, asp_oc, "
                   "psa, ema, mhsa, transformer, sanet, strip) or unet / attention_unet (default fcn)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<backbone>-<attention>-<hash>)")
    _recipe_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="train several modules with one recipe and rank them")
    p.add_argument("--attention", default=",".join(DEMO_MODULES), help="comma-separated keys, 'none' for the "
                   "plain backbone, KEY:ARG=VALUE for module arguments (e.g. sge:groups=8) "
                   f"(default {','.join(DEMO_MODULES)})")
    p.add_argument("--head", default="fcn,nonlocal,cc,danet", help="segmentation: comma-separated heads, "
                   "HEAD:ARG=VALUE for module arguments (default fcn,nonlocal,cc,danet)")
    p.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated seeds, e.g. 1,2,3")
    p.add_argument("--out", default="runs/compare")
    _jobs_argument(p)
    _recipe_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("ablate", help="the SE paper's ablations (squeeze, excitation, ratio, integration)")
    p.add_argument("key", nargs="?", default="se", choices=("se",))
    p.add_argument("--seeds", type=_int_list, default=[0])
    p.add_argument("--out", default="runs/ablate-se")
    _jobs_argument(p)
    _recipe_arguments(p)
    p.set_defaults(func=cmd_ablate)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `visattn` command")
