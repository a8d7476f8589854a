"""`visattn train`, `visattn compare` and `visattn ablate`: argument parsing only."""

from __future__ import annotations

import argparse
import ast
import sys

from ..data.loader import DATASETS
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


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two numbers), got {text!r}") from None
    return lo, hi


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _clutter_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluttered-fashion-mnist (RAM / STN papers' cluttered digits, made from Fashion-MNIST)")
    g.add_argument("--canvas", type=_count, default=None, help="canvas side in pixels (default 60)")
    g.add_argument("--clutter", type=_count, default=None, help="clutter pieces per image (default 4)")
    g.add_argument("--clutter-size", type=_count, default=None, help="side of a clutter piece (default 8)")
    g.add_argument("--rts", action="store_true", help="rotate (+-45 degrees) and scale (0.7-1.2) the item, as the "
                   "STN paper's RTS data")
    g.add_argument("--rotation", type=_range, default=None, metavar="LOW,HIGH", help="item rotation range, degrees")
    g.add_argument("--scale", type=_range, default=None, metavar="LOW,HIGH", help="item scale range")


def _dataset_kwargs(args: argparse.Namespace) -> dict:
    names = {"canvas": "canvas", "clutter": "clutter", "clutter_size": "clutter_size", "rotation": "rotation",
             "scale": "scale"}
    options = {key: getattr(args, attr) for attr, key in names.items() if getattr(args, attr, None) is not None}
    if getattr(args, "rts", False):
        options["rts"] = True
    return options


def _recipe_arguments(p: argparse.ArgumentParser, epochs: int = 1) -> None:
    g = p.add_argument_group("recipe")
    g.add_argument("--backbone", default="resnet20", help="e.g. resnet20, resnet56, resnet18, plaincnn (a small "
                   "plain CNN, the STN / RAM papers' baseline) (default resnet20)")
    g.add_argument("--transform", default=None, help="a transform module at the network input: stn (the STN "
                   "paper's ST-CNN)")
    g.add_argument("--transform-lr-scale", type=_positive(float), default=0.1, help="the input transform learns "
                   "at this multiple of --lr (default 0.1: at the full lr the ST's localisation net died in our runs)")
    g.add_argument("--zero-init-residual", action="store_true", help="start every residual branch at zero (last "
                   "BN weight 0; torchvision's option, Goyal et al. 2017): a block starts as the identity")
    g.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    g.add_argument("--data-dir", default=None, help="data folder (Fashion-MNIST idx files, a CIFAR python folder, "
                   "or an ImageFolder tree with train/ and val/)")
    g.add_argument("--epochs", type=_positive(int), default=epochs)
    g.add_argument("--batch-size", type=_positive(int), default=128)
    g.add_argument("--lr", type=_positive(float), default=0.1)
    g.add_argument("--schedule", choices=SCHEDULES, default="onecycle")
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
    _clutter_arguments(p)


def _jobs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=_positive(int), default=1, help="CPU runs to train at once, each with its share "
                   "of the threads (default 1; on a 2-core machine --jobs 2 finishes a comparison sooner)")


def _base_config(args: argparse.Namespace, **extra) -> TrainConfig:
    return TrainConfig(backbone=args.backbone, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, schedule=args.schedule, weight_decay=args.wd,
                       train_limit=args.train_limit, val_limit=args.val_limit, image_size=args.image_size,
                       amp=args.amp, channels_last=args.channels_last, compile=args.compile, device=args.device,
                       pad=args.crop_pad, flip=not args.no_flip, dataset_kwargs=_dataset_kwargs(args),
                       transform=args.transform, transform_lr_scale=args.transform_lr_scale,
                       zero_init_residual=args.zero_init_residual, **extra)


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


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import train

    _check_attention([args.attention, args.transform])
    config = _run(lambda: _base_config(args, attention=args.attention, position=args.position,
                                       attention_kwargs=dict(args.attention_kw), seed=args.seed))
    out = args.out or f"runs/{config.backbone}-{config.attention or 'none'}-{config.digest()}"
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
    if key != "none" and _is_transform(key):  # e.g. stn: the network with the transform at its input (ST-CNN)
        if kwargs:
            raise CLIError(f"--attention {token}: a transform is sized for the input; it takes no arguments here")
        return Variant(token, None, transform=key)
    return Variant(token, None if key == "none" else key, attention_kwargs=kwargs)


def _is_transform(key: str) -> bool:
    from ..registry import info

    try:
        return info(key).role == "transform"
    except KeyError:
        return False


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    variants = [_variant(token.strip()) for token in args.attention.split(",") if token.strip()]
    _check_attention([v.attention or v.transform for v in variants] + [args.transform])
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<backbone>-<attention>-<hash>)")
    _recipe_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="train several modules with one recipe and rank them")
    p.add_argument("--attention", default=",".join(DEMO_MODULES), help="comma-separated keys, 'none' for the "
                   "plain backbone, KEY:ARG=VALUE for module arguments (e.g. sge:groups=8) "
                   f"(default {','.join(DEMO_MODULES)})")
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
