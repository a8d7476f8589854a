"""`visattn train`, `visattn compare` and `visattn ablate`: argument parsing only."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..cli import add_device_argument, add_quiet_argument
from ..data.loader import DATASETS, DEFAULT_MEMORY_BUDGET_MB
from ..data.segmentation import SEG_DATASETS
from .config import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = ["add_parser", "DEMO_MODULES"]

#: What `make demo` compares.
DEMO_MODULES = ("none", "se", "eca", "cbam", "coord", "simam")

_EPILOG = """\
modules are written KEY[:ARG=VALUE[:ARG=VALUE]], comma-separated where several are allowed:
  visattn train --attention se:reduction=8
  visattn compare --attention none,se,sge:groups=8,cbam:reduction=8:kernel_size=3
values are Python literals (8, 0.5, True, (3,5)) or plain words (gate_layer=tanh)
"""


def _arg_value(text: str) -> str:
    """``--attention-kw ARG=VALUE``, kept as written: the module grammar parses and checks it."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected ARG=VALUE, got {text!r}")
    return text.strip()


def _bounded(kind, *, allow_zero: bool):
    """An argparse type: a number of ``kind`` that is positive, or ``>= 0`` with ``allow_zero``."""
    what = f"a {kind.__name__} >= 0" if allow_zero else f"a positive {kind.__name__}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value >= 0 if allow_zero else value > 0):  # NaN fails both
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _non_negative(kind):
    return _bounded(kind, allow_zero=True)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _positive(kind):
    return _bounded(kind, allow_zero=False)


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
    g.add_argument("--task", choices=("classification", "segmentation"), default="classification",
                   help="classification, or segmentation (a decode head on a dilated backbone, see --head)")
    g.add_argument("--backbone", default=None, help="e.g. resnet20, resnet56, resnet18, plaincnn (default resnet20), "
                   "or any timm / torchvision classifier as timm:NAME / tv:NAME (e.g. timm:resnet50, "
                   "tv:efficientnet_b0; nothing is downloaded, see --pretrained); "
                   "segmentation: tiny, resnet18, resnet50, resnet101 (dilated; default tiny)")
    g.add_argument("--where", default=None, metavar="GLOB", help="put the attention module after every module whose "
                   "name matches this glob (e.g. 'layer4.*.bn2'; attach's where=), instead of where its paper puts it")
    g.add_argument("--replace", action="store_true", help="swap the network's own attention (an EfficientNet's or "
                   "SE-ResNet's SE) for the --attention module, where it is")
    g.add_argument("--pretrained", default=None, metavar="FILE|RUN_DIR", help="start from these weights: a "
                   "state_dict (.pt / .pth, read with weights_only=True, or .safetensors) or an earlier visattn run "
                   "folder; attention modules and a classifier of another size start fresh, every other weight must "
                   "fit")
    g.add_argument("--img-size", type=_positive(int), default=None, help="image folders at real resolution: "
                   "RandomResizedCrop + flip to this size for training, shorter-side resize + centre crop for "
                   "evaluation, decoded in --workers processes (default for timm: / tv: backbones: the input size of "
                   "their published weights; otherwise --image-size squashes the images)")
    g.add_argument("--transform", default=None, help="a transform module at the network input: stn (the STN "
                   "paper's ST-CNN) (default: none)")
    g.add_argument("--transform-lr-scale", type=_positive(float), default=0.1, help="the input transform learns "
                   "at this multiple of --lr (0.1: at the full lr the ST's localisation net died in our runs)")
    g.add_argument("--zero-init-residual", action="store_true", help="start every residual branch at zero (last "
                   "BN weight 0; torchvision's option, Goyal et al. 2017): a block starts as the identity")
    g.add_argument("--dataset", default=None, choices=DATASETS + SEG_DATASETS,
                   help="the data set (default fashion-mnist; segmentation: fashion-scenes)")
    g.add_argument("--data-dir", default=None, help="data folder, used exactly as given (Fashion-MNIST idx files, "
                   "a CIFAR python folder, an ImageFolder tree with train/ and val/; segmentation: a VOC2012 folder, "
                   "or classes.txt + images/{train,val}/ + masks/{train,val}/) (default: $VISATTN_DATA; "
                   "Fashion-MNIST is searched for when neither is set)")
    g.add_argument("--memory-budget-mb", type=_non_negative(int), default=DEFAULT_MEMORY_BUDGET_MB,
                   help="ImageFolder data whose decoded images need more than this many MiB are streamed from disk "
                   "by DataLoader workers instead of held in memory (0: always stream)")
    g.add_argument("--epochs", type=_positive(int), default=epochs, help="training epochs")
    g.add_argument("--batch-size", type=_positive(int), default=None,
                   help="images per batch, per process (default 128; segmentation: 16)")
    g.add_argument("--lr", type=_positive(float), default=None,
                   help="peak learning rate, SGD with Nesterov momentum (default 0.1; segmentation: 0.01)")
    g.add_argument("--schedule", "--sched", dest="schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (default onecycle; segmentation: poly, power 0.9)")
    g.add_argument("--wd", type=_non_negative(float), default=5e-4, help="weight decay (not on norms and biases)")
    g.add_argument("--train-limit", type=_positive(int), default=None,
                   help="use a class-stratified random N of the training images, the same for every seed "
                   "(default: all)")
    g.add_argument("--val-limit", type=_positive(int), default=None, help="use a class-stratified random N of the "
                   "test images (default: all)")
    g.add_argument("--image-size", type=_positive(int), default=32, help="resize ImageFolder images to this size")
    g.add_argument("--crop-pad", type=int, default=None, help="random-crop padding in pixels, 0 for none "
                   "(default: 4 for CIFAR and ImageFolder, 0 for Fashion-MNIST, where flips alone train best in "
                   "short runs)")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    g.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    add_device_argument(g)
    add_quiet_argument(g)
    _practitioner_arguments(p)
    s = p.add_argument_group("segmentation")
    s.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=8, help="dilated backbone's output "
                   "stride")
    s.add_argument("--no-aux", action="store_true", help="no auxiliary FCN head on stage 3 (loss weight 0.4)")
    s.add_argument("--scene-size", type=_positive(int), default=64, help="Fashion-MNIST scene side")
    s.add_argument("--crop-size", type=_positive(int), default=512, help="training crop of folder data")
    s.add_argument("--ignore-index", type=_non_negative(int), default=255, metavar="LABEL",
                   help="a label left out of the loss and mIoU (255, VOC's borders and crop padding, always is)")
    s.add_argument("--class-weights", type=_float_list, default=None, metavar="W,W,...",
                   help="per-class weights of the segmentation loss, one per class")
    s.add_argument("--eval-mode", choices=("whole", "slide"), default="whole",
                   help="segmentation evaluation: whole images, or sliding windows of the training crop (mmseg's "
                        "slide inference)")
    s.add_argument("--workers", type=_non_negative(int), default=2, help="DataLoader processes for folder data")
    s.add_argument("--head-lr-mult", type=_positive(float), default=1.0, help="learning-rate multiplier of the "
                   "decode head, whose zero-initialised residual scales otherwise grow slowly (PyTorch-Encoding, "
                   "DANet's code base, trains head and auxiliary layer at 10; 1 is the papers' text)")
    _clutter_arguments(p)


def _practitioner_arguments(p: argparse.ArgumentParser) -> None:
    """The timm recipe (visattn.train.recipe): all but the defaults need the ``train`` extra."""
    r = p.add_argument_group("practitioner's recipe (timm's optimisers, schedulers, mixup and EMA; the train extra)")
    r.add_argument("--opt", choices=OPTIMIZERS, default="sgd", help="sgd (Nesterov momentum) or adamw "
                   "(timm's create_optimizer_v2; its default --lr is 1e-3) (default sgd)")
    r.add_argument("--warmup-epochs", type=_non_negative(float), default=0.0, help="linear learning-rate warm-up "
                   "in epochs, stepped every update (cosine / poly: timm's schedulers; onecycle: its rising phase)")
    r.add_argument("--label-smoothing", type=_non_negative(float), default=0.0, help="label smoothing (default 0)")
    r.add_argument("--mixup", type=_non_negative(float), default=0.0, help="mixup alpha (timm's Mixup with "
                   "soft-target cross-entropy; classification only) (default 0: off)")
    r.add_argument("--cutmix", type=_non_negative(float), default=0.0, help="cutmix alpha (default 0: off)")
    r.add_argument("--model-ema", action="store_true", help="keep an exponential moving average of the weights "
                   "(timm's ModelEmaV3) and report its evaluation beside the model's")
    r.add_argument("--model-ema-decay", type=_positive(float), default=0.9998, help="EMA decay (default 0.9998)")
    r.add_argument("--accum-steps", type=_positive(int), default=1, help="batches whose gradients add up to one "
                   "update (default 1)")
    r.add_argument("--eval-every", type=_positive(int), default=1, help="evaluate every N epochs and after the "
                   "last (default 1)")


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

    backbone = pick(args.backbone, "resnet20", "tiny")
    if not seg:
        _check_backbone(backbone)
    return TrainConfig(backbone=backbone, dataset=pick(args.dataset, "fashion-mnist", "fashion-scenes"),
                       data_dir=args.data_dir, epochs=args.epochs, batch_size=pick(args.batch_size, 128, 16),
                       lr=pick(args.lr, 0.1 if args.opt == "sgd" else 1e-3, 0.01 if args.opt == "sgd" else 1e-3),
                       schedule=pick(args.schedule, "onecycle", "poly"),
                       weight_decay=args.wd, train_limit=args.train_limit, val_limit=args.val_limit,
                       image_size=args.image_size, amp=args.amp, channels_last=args.channels_last,
                       compile=args.compile, device=args.device, pad=args.crop_pad, flip=not args.no_flip,
                       memory_budget_mb=args.memory_budget_mb, task=args.task, output_stride=args.output_stride,
                       aux=not args.no_aux, scene_size=args.scene_size, crop_size=args.crop_size,
                       workers=args.workers, head_lr_mult=args.head_lr_mult, dataset_kwargs=_dataset_kwargs(args),
                       transform=_transform(args.transform), transform_lr_scale=args.transform_lr_scale,
                       zero_init_residual=args.zero_init_residual, where=args.where, replace=args.replace,
                       pretrained=_pretrained(args.pretrained), img_size=args.img_size, opt=args.opt,
                       warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, mixup=args.mixup,
                       cutmix=args.cutmix, model_ema=args.model_ema, model_ema_decay=args.model_ema_decay,
                       accum_steps=args.accum_steps, eval_every=args.eval_every, ignore_index=args.ignore_index,
                       class_weights=args.class_weights, eval_mode=args.eval_mode, **extra)


def _pretrained(path: str | None) -> str | None:
    """``--pretrained``: a file or a run folder that exists (what is in it is checked when it is loaded)."""
    from pathlib import Path

    from ..cli import CLIError

    if path is not None and not Path(path).exists():
        raise CLIError(f"--pretrained {path}: no such file or run folder")
    return path


def _check_backbone(name: str) -> None:
    """An unknown ``--backbone`` is refused before the data is loaded."""
    import difflib

    from ..backbones import list_backbones
    from ..cli import CLIError

    if ":" in name:  # timm:NAME / tv:NAME
        from ..backbones.external import check_backbone_name

        try:
            check_backbone_name(name)
        except (ValueError, ImportError) as err:
            raise CLIError(f"--backbone: {err}") from None
        return
    names = list_backbones()
    if name not in names:
        close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(k) for k in close)}?" if close else ""
        raise CLIError(f"--backbone: unknown backbone {name!r}.{hint} Backbones: {', '.join(names)}")


def _interrupted(args: argparse.Namespace, out: str, what: str) -> int:
    """After Ctrl-C: one line saying what is saved and the command that resumes; exit status 130."""
    from .checkpoint import checkpoint_paths

    command = ["visattn", *args.argv]
    if "--out" not in args.argv:
        command += ["--out", out]
    saved = checkpoint_paths(Path(out, "checkpoints")) if what == "train" else []
    if what == "train" and not saved:
        done = "interrupted before the first epoch finished, nothing was saved"
    elif what == "train":
        done = f"interrupted; the finished epochs are saved ({saved[0]})"
    else:
        done = f"interrupted; finished runs and epochs are saved under {out}"
    print(f"visattn {args.command}: {done}; resume with: {shlex.join(command)}", file=sys.stderr)
    return 130


def _train_module(args: argparse.Namespace):
    """``--attention KEY[:ARG=VALUE]`` plus any ``--attention-kw ARG=VALUE``, checked as one module spec."""
    from ..cli import CLIError, module_list

    text = args.attention or "none"
    if args.attention_kw:
        text = ":".join([text, *args.attention_kw])
    specs = module_list(text, allow_none=True)
    if len(specs) != 1:
        raise CLIError(f"--attention: train takes one module, got {len(specs)} ({args.attention}); "
                       "use `visattn compare` for several")
    return specs[0]


def _run(fn):
    """Turn the library's user-facing errors into one-line CLI errors (exit 2)."""
    from ..cli import CLIError
    from ..data import DatasetNotFoundError
    from ..data.idx import IdxFormatError
    from .recipe import MissingExtraError
    from .trainer import ConfigMismatchError

    try:
        return fn()
    except (DatasetNotFoundError, IdxFormatError, ConfigMismatchError, FileNotFoundError, MissingExtraError) as err:
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
    from ..cli import check_out_dir
    from .trainer import train

    spec = _train_module(args)
    attention = None if spec.key == "none" else spec.key
    if attention is None and (args.where or args.replace):
        from ..cli import CLIError

        raise CLIError("--where / --replace place the --attention module: give one (e.g. --attention cbam)")
    extra, module_kwargs = {}, spec.kwargs_dict()
    if args.task == "segmentation":  # the head's own arguments (danet:branch_loss_weight=0) travel as module ones
        head = _head_variant(args.head)
        extra["head"], module_kwargs = head.head, dict(head.attention_kwargs)
    config = _run(lambda: _base_config(args, attention=attention, position=args.position,
                                       attention_kwargs=module_kwargs, seed=args.seed, **extra))
    name = config.head if config.task == "segmentation" else config.attention or "none"
    out = args.out or f"runs/{config.backbone.replace(':', '-')}-{name}-{config.digest()}"
    check_out_dir(out)
    try:
        _run(lambda: train(config, out, progress=not args.quiet, tensorboard=args.tensorboard))
    except KeyboardInterrupt:
        return _interrupted(args, out, "train")
    print(f"run folder: {out}")
    return 0


def _print_leaderboard(out: str) -> None:
    from pathlib import Path

    print(Path(out, "leaderboard.md").read_text())
    print(f"written: {out}/leaderboard.md, {out}/leaderboard.json and plots")


def _variants(text: str):
    """``--attention`` in the module grammar (``none,se,sge:groups=8``) -> comparison entries."""
    from ..cli import CLIError, module_list
    from .compare import Variant

    variants = []
    for spec in module_list(text, allow_none=True):
        if spec.key != "none" and _is_transform(spec.key):  # e.g. stn: the network with the ST at its input
            if spec.kwargs:
                raise CLIError(f"--attention {spec.text}: a transform is sized for the input; it takes no arguments")
            variants.append(Variant(spec.text, None, transform=spec.key))
        else:
            variants.append(Variant(spec.text, None if spec.key == "none" else spec.key, attention_kwargs=spec.kwargs))
    return variants


def _transform(key: str | None) -> str | None:
    """``--transform``: a registered transform-role key (``stn``), or none."""
    from ..cli import CLIError, module_list

    if key is None or key.lower() == "none":
        return None
    spec = module_list(key, flag="--transform")[0]
    if not _is_transform(spec.key) or spec.kwargs:
        raise CLIError(f"--transform {key}: expected a transform module without arguments "
                       f"(transforms: {', '.join(_transform_keys())})")
    return spec.key


def _transform_keys() -> list[str]:
    from ..registry import list_modules

    return list_modules(role="transform")


def _compare(args: argparse.Namespace, variants) -> int:
    from ..cli import check_out_dir
    from .compare import compare

    check_out_dir(args.out)
    base = _run(lambda: _base_config(args))
    try:
        _run(lambda: compare(base, variants, args.seeds, args.out, progress=not args.quiet, jobs=args.jobs))
    except KeyboardInterrupt:
        return _interrupted(args, args.out, "compare")
    _print_leaderboard(args.out)
    return 0


def _head_variant(token: str):
    """``head`` or ``head:arg=value`` (e.g. ``cc:recurrence=1``) -> a segmentation comparison entry."""
    from ..cli import CLIError, clean_message
    from ..spec import literal_or_word, split_top_level
    from .compare import Variant

    name, *settings = split_top_level(token, ":")
    _check_head([name])
    kwargs = []
    for item in settings:
        arg, eq, raw = item.partition("=")
        if not eq or not arg.strip():
            raise CLIError(f"--head {token}: expected ARG=VALUE after ':', got {item!r}")
        kwargs.append((arg.strip(), literal_or_word(raw.strip())))
    if kwargs:  # refused here, in one line, rather than in a run's subprocess
        from ..segmentation import create_segmenter

        try:
            create_segmenter(name, 2, backbone="tiny", input_size=32, **dict(kwargs))
        except (TypeError, ValueError) as err:
            raise CLIError(f"--head {token}: {clean_message(str(err))}") from None
    return Variant(token, None, attention_kwargs=tuple(kwargs), head=name)


def _split_list(text: str) -> list[str]:
    from ..cli import CLIError
    from ..spec import split_top_level

    tokens = [t.strip() for t in split_top_level(text, ",") if t.strip()]
    if not tokens:
        raise CLIError("--head: give at least one head, e.g. --head fcn,cc")
    return tokens


def _is_transform(key: str) -> bool:
    from ..registry import info

    try:
        return info(key).role == "transform"
    except KeyError:
        return False


def cmd_compare(args: argparse.Namespace) -> int:
    if args.task == "segmentation":
        return _compare(args, [_head_variant(token) for token in _split_list(args.head)])
    return _compare(args, _variants(args.attention))


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..cli import CLIError, module_list
    from .compare import ablation_variants

    specs = module_list(args.key, flag="KEY")
    spec = specs[0]
    if len(specs) != 1 or spec.kwargs:
        raise CLIError(f"ablate takes one key alone (it varies the module's own arguments), got {args.key}")
    return _compare(args, _run(lambda: ablation_variants(spec.key)))


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a backbone with an attention module, or a segmentation head",
                       epilog=_EPILOG)
    p.add_argument("--attention", default="none", metavar="KEY[:ARG=VALUE...]",
                   help="the module, with its arguments if wanted (e.g. se:reduction=8), or none")
    p.add_argument("--position", default="standard", choices=("standard", "pre", "post", "identity"),
                   help="where the module sits in each residual block")
    p.add_argument("--attention-kw", type=_arg_value, action="append", default=[], metavar="ARG=VALUE",
                   help="module argument, repeatable (the same as KEY:ARG=VALUE; e.g. --attention-kw reduction=8)")
    p.add_argument("--head", default="fcn", help="segmentation: decode head (fcn, nonlocal, cc, danet, oc, asp_oc, "
                   "psa, ema, mhsa, transformer, sanet, strip) or unet / attention_unet")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, order and augmentation")
    p.add_argument("--out", default=None, help="run folder (default runs/<backbone>-<attention>-<hash>)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files to OUT/tensorboard "
                   "(needs the tensorboard package; steps.csv / metrics.csv are always written)")
    _recipe_arguments(p)
    p.set_defaults(func=cmd_train)
    _use_parsers(sub)

    p = sub.add_parser("compare", help="train several modules (or segmentation heads) with one recipe and rank them",
                       epilog=_EPILOG)
    p.add_argument("--attention", default=",".join(DEMO_MODULES), metavar="KEY[:ARG=VALUE...],...",
                   help="comma-separated modules, 'none' for the plain backbone, KEY:ARG=VALUE for module "
                   "arguments (e.g. none,se,sge:groups=8)")
    p.add_argument("--head", default="fcn,nonlocal,cc,danet", metavar="HEAD[:ARG=VALUE...],...",
                   help="segmentation: comma-separated heads, HEAD:ARG=VALUE for module arguments")
    p.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated seeds, e.g. 1,2,3")
    p.add_argument("--out", default="runs/compare", help="folder of the runs and the leaderboard")
    _jobs_argument(p)
    _recipe_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("ablate", help="the SE paper's ablations (squeeze, excitation, ratio, integration)")
    p.add_argument("key", nargs="?", default="se", metavar="KEY", help="the module whose paper's ablations to "
                   "run (only se has them)")
    p.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated seeds, e.g. 1,2,3")
    p.add_argument("--out", default="runs/ablate-se", help="folder of the runs and the leaderboard")
    _jobs_argument(p)
    _recipe_arguments(p)
    p.set_defaults(func=cmd_ablate)


_RUNTIME = {"onnx": "onnxruntime", "export": "the loaded torch.export program", "torchscript": "the loaded TorchScript"}


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from ..predict import predict_images, segment_images
    from .run import load_run

    opened = _run(lambda: load_run(args.run))
    if opened.config.task == "segmentation":
        written = _run(lambda: segment_images(opened, args.images, args.out or f"{args.run}/masks"))
        pairs = [{"image": str(i), "mask": str(m)} for i, m in zip(args.images, written, strict=True)]
        print(json.dumps(pairs) if args.json else "\n".join(f"{p['image']}: {p['mask']}" for p in pairs))
        return 0
    results = _run(lambda: predict_images(opened, args.images, topk=args.topk))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(f"{result['image']}: " + ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from ..export import export_run
    from .run import load_run

    opened = _run(lambda: load_run(args.run))
    try:
        result = _run(lambda: export_run(opened, args.format, args.out))
    except ImportError as err:
        raise CLIError(f"--format {args.format} needs {err.name or 'a package'}: pip install 'visattn[export]'") \
            from None
    print(f"wrote {result['path']} ({args.format}) and {result['path']}.json (preprocessing, class names)")
    print(f"{_RUNTIME[args.format]} matches eager on {result['images']} images of the run's validation data "
          f"(max |difference| {result['max_abs_diff']:.2g})")
    return 0


def _use_parsers(sub) -> None:
    """``predict`` and ``export``: use a finished run (through :func:`visattn.load_run`)."""
    p = sub.add_parser("predict", help="classify image files with a finished run (segmentation: write masks)")
    p.add_argument("run", metavar="RUN", help="a run folder written by `visattn train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--topk", type=_positive(int), default=5, help="classes to list per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON: each image with class, index and probability")
    p.add_argument("--out", default=None, help="segmentation: folder of the palette PNG masks (default RUN/masks)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("export", help="write a run's model (onnx, torch.export, torchscript), checked against eager")
    p.add_argument("run", metavar="RUN", help="a run folder written by `visattn train`")
    p.add_argument("--format", choices=("onnx", "export", "torchscript"), default="onnx", help="onnx (preprocessing "
                   "in metadata_props), export (a torch.export program) or torchscript (traced) (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (FILE.json is written beside it)")
    p.set_defaults(func=cmd_export)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `visattn` command")
