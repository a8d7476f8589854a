"""The recipe options that ``train``, ``compare`` and ``ablate`` share, and turning them into a TrainConfig."""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from pathlib import Path

from ..data.loader import DATASETS, DEFAULT_MEMORY_BUDGET_MB
from ..data.segmentation import SEG_DATASETS
from ..train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from .common import CLIError, add_device_argument, add_quiet_argument, bounded, number_range, run_library

__all__ = ["add_recipe_arguments", "add_jobs_argument", "base_config", "interrupted", "EPILOG"]

EPILOG = """\
modules are written KEY[:ARG=VALUE[:ARG=VALUE]], comma-separated where several are allowed:
  visattn train --attention se:reduction=8
  visattn compare --attention none,se,sge:groups=8,cbam:reduction=8:kernel_size=3
values are Python literals (8, 0.5, True, (3,5)) or plain words (gate_layer=tanh)
"""

_positive_int, _positive_float = bounded(int, 1), bounded(float, 0, strict=True)
_non_negative_int, _non_negative_float = bounded(int, 0), bounded(float, 0)
_any_int = bounded(int, float("-inf"), what="an integer")  # the data set checks its own options


def _clutter_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluttered-fashion-mnist (RAM / STN papers' cluttered digits, made from Fashion-MNIST)")
    g.add_argument("--canvas", type=_any_int, default=None, help="canvas side in pixels (default 60)")
    g.add_argument("--clutter", type=_any_int, default=None, help="clutter pieces per image (default 4)")
    g.add_argument("--clutter-size", type=_any_int, default=None, help="side of a clutter piece (default 8)")
    g.add_argument("--rts", action="store_true", help="rotate (+-45 degrees) and scale (0.7-1.2) the item, as the "
                   "STN paper's RTS data")
    g.add_argument("--rotation", type=number_range, default=None, metavar="LOW,HIGH",
                   help="item rotation range, degrees")
    g.add_argument("--scale", type=number_range, default=None, metavar="LOW,HIGH", help="item scale range")


def _dataset_kwargs(args: argparse.Namespace) -> dict:
    names = ("canvas", "clutter", "clutter_size", "rotation", "scale")
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "rts", False):
        options["rts"] = True
    return options


def add_recipe_arguments(p: argparse.ArgumentParser, epochs: int = 1) -> None:
    """The recipe, data, hardware and segmentation options of ``train`` / ``compare`` / ``ablate``."""
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
    g.add_argument("--img-size", type=_positive_int, default=None, help="image folders at real resolution: "
                   "RandomResizedCrop + flip to this size for training, shorter-side resize + centre crop for "
                   "evaluation, decoded in --workers processes (default for timm: / tv: backbones: the input size of "
                   "their published weights; otherwise --image-size squashes the images)")
    g.add_argument("--transform", default=None, metavar="KEY[:ARG=VALUE...]", help="a transform module at the "
                   "network input: stn (the STN paper's ST-CNN), with its arguments in the module grammar, e.g. "
                   "stn:output_size=30 (the paper's downsampling: the network after it reads a 30x30 grid) or "
                   "stn:loc_net=paper (its localisation net for 60x60 inputs) (default: none)")
    g.add_argument("--no-global-pool", action="store_true", help="plaincnn: the classifier reads the whole last "
                   "map instead of its global average (the STN Lasagne recipe; built for the input size)")
    g.add_argument("--transform-lr-scale", type=_positive_float, default=0.1, help="the input transform learns "
                   "at this multiple of --lr (0.1: at the full lr the ST's localisation net died in our runs)")
    g.add_argument("--zero-init-residual", action="store_true", help="start every residual branch at zero (last "
                   "BN weight 0; torchvision's option, Goyal et al. 2017): a block starts as the identity")
    g.add_argument("--dataset", default=None, choices=DATASETS + SEG_DATASETS,
                   help="the data set (default fashion-mnist; segmentation: fashion-scenes)")
    g.add_argument("--data-dir", default=None, help="data folder, used exactly as given (Fashion-MNIST idx files, "
                   "a CIFAR python folder, an ImageFolder tree with train/ and val/; segmentation: a VOC2012 folder, "
                   "or classes.txt + images/{train,val}/ + masks/{train,val}/) (default: $VISATTN_DATA; "
                   "Fashion-MNIST is searched for when neither is set)")
    g.add_argument("--memory-budget-mb", type=_non_negative_int, default=DEFAULT_MEMORY_BUDGET_MB,
                   help="ImageFolder data whose decoded images need more than this many MiB are streamed from disk "
                   "by DataLoader workers instead of held in memory (0: always stream)")
    g.add_argument("--epochs", type=_positive_int, default=epochs, help="training epochs")
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help="images per batch, per process (default 128; segmentation: 16)")
    g.add_argument("--lr", type=_positive_float, default=None,
                   help="peak learning rate, SGD with Nesterov momentum (default 0.1; segmentation: 0.01)")
    g.add_argument("--schedule", "--sched", dest="schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule (default onecycle; segmentation: poly, power 0.9)")
    g.add_argument("--wd", type=_non_negative_float, default=5e-4, help="weight decay (not on norms and biases)")
    g.add_argument("--train-limit", type=_positive_int, default=None,
                   help="use a class-stratified random N of the training images, the same for every seed "
                   "(default: all)")
    g.add_argument("--val-limit", type=_positive_int, default=None, help="use a class-stratified random N of the "
                   "test images (default: all)")
    g.add_argument("--subset-seed", type=_subset_seed, default=0, metavar="SEED|first", help="the seed the "
                   "--train-limit / --val-limit subsets are drawn from (default 0), or 'first': the first N images, "
                   "as studies recorded before subsets were stratified (in-memory classification data only)")
    g.add_argument("--image-size", type=_positive_int, default=32, help="resize ImageFolder images to this size")
    g.add_argument("--crop-pad", type=int, default=None, help="random-crop padding in pixels, 0 for none "
                   "(default: 4 for CIFAR and ImageFolder, 0 for Fashion-MNIST, where flips alone train best in "
                   "short runs)")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    g.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    add_device_argument(g)
    g.add_argument("--keep-checkpoints", type=_non_negative_int, default=2, metavar="N", help="keep the newest N "
                   "epoch checkpoints (default 2; 0: every epoch's, to look at how a run learnt with visattn show)")
    add_quiet_argument(g)
    s = p.add_argument_group("segmentation")
    s.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=8, help="dilated backbone's output "
                   "stride")
    s.add_argument("--no-aux", action="store_true", help="no auxiliary FCN head on stage 3 (loss weight 0.4)")
    s.add_argument("--scene-size", type=_positive_int, default=64, help="Fashion-MNIST scene side")
    s.add_argument("--crop-size", type=_positive_int, default=512, help="training crop of folder data")
    s.add_argument("--workers", type=_non_negative_int, default=2, help="DataLoader processes for folder data")
    s.add_argument("--head-lr-scale", "--head-lr-mult", dest="head_lr_scale", type=_positive_float, default=1.0,
                   help="the decode head learns at this multiple of --lr; its zero-initialised residual scales "
                   "otherwise grow slowly (PyTorch-Encoding, DANet's code base, trains head and auxiliary layer at "
                   "10; 1 is the papers' text)")
    s.add_argument("--ignore-index", type=_non_negative_int, default=255, metavar="LABEL",
                   help="a label left out of the loss and mIoU (255, VOC's borders and crop padding, always is)")
    s.add_argument("--class-weights", type=_float_list, default=None, metavar="W,W,...",
                   help="per-class weights of the segmentation loss, one per class")
    s.add_argument("--eval-mode", choices=("whole", "slide"), default="whole",
                   help="segmentation evaluation: whole images, or sliding windows of the training crop (mmseg's "
                        "slide inference)")
    _practitioner_arguments(p)
    _clutter_arguments(p)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _practitioner_arguments(p: argparse.ArgumentParser) -> None:
    """The timm recipe (visattn.train.recipe): all but the defaults need the ``train`` extra."""
    r = p.add_argument_group("practitioner's recipe (timm's optimisers, schedulers, mixup and EMA; the train extra)")
    r.add_argument("--opt", choices=OPTIMIZERS, default="sgd", help="sgd (Nesterov momentum) or adamw "
                   "(timm's create_optimizer_v2; its default --lr is 1e-3) (default sgd)")
    r.add_argument("--warmup-epochs", type=_non_negative_float, default=0.0, help="linear learning-rate warm-up "
                   "in epochs, stepped every update (cosine / poly: timm's schedulers; onecycle: its rising phase)")
    r.add_argument("--label-smoothing", type=_non_negative_float, default=0.0, help="label smoothing (default 0)")
    r.add_argument("--mixup", type=_non_negative_float, default=0.0, help="mixup alpha (timm's Mixup with "
                   "soft-target cross-entropy; classification only) (default 0: off)")
    r.add_argument("--cutmix", type=_non_negative_float, default=0.0, help="cutmix alpha (default 0: off)")
    r.add_argument("--model-ema", action="store_true", help="keep an exponential moving average of the weights "
                   "(timm's ModelEmaV3) and report its evaluation beside the model's")
    r.add_argument("--model-ema-decay", type=_positive_float, default=0.9998, help="EMA decay (default 0.9998)")
    r.add_argument("--accum-steps", type=_positive_int, default=1, help="batches whose gradients add up to one "
                   "update (default 1)")
    r.add_argument("--eval-every", type=_positive_int, default=1, help="evaluate every N epochs and after the "
                   "last (default 1)")


def add_jobs_argument(p: argparse.ArgumentParser) -> None:
    """``--jobs``: CPU runs trained at once by ``compare`` / ``ablate``."""
    p.add_argument("--jobs", type=_positive_int, default=1, help="CPU runs to train at once, each with its share "
                   "of the threads (default 1; on a 2-core machine --jobs 2 finishes a comparison sooner)")


def _check_backbone(name: str) -> None:
    """An unknown ``--backbone`` is refused before the data is loaded."""
    from ..backbones import list_backbones

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


def _transform(text: str | None) -> tuple[str | None, dict]:
    from ..train.compare import parse_transform

    try:
        return parse_transform(text)
    except ValueError as err:
        raise CLIError(f"--transform: {err}") from None


def base_config(args: argparse.Namespace, **extra) -> TrainConfig:
    """The :class:`TrainConfig` the recipe options describe, with ``extra`` fields set."""
    seg = args.task == "segmentation"
    if seg and args.dataset in DATASETS or not seg and args.dataset in SEG_DATASETS:
        raise CLIError(f"--dataset {args.dataset} is not a {args.task} data set; choose from "
                       f"{', '.join(SEG_DATASETS if seg else DATASETS)}")

    def pick(value, classification, segmentation):
        return value if value is not None else (segmentation if seg else classification)

    backbone = pick(args.backbone, "resnet20", "tiny")
    if not seg:
        _check_backbone(backbone)
    transform, transform_kwargs = _transform(args.transform)
    config = run_library(lambda: TrainConfig(
        backbone=backbone, dataset=pick(args.dataset, "fashion-mnist", "fashion-scenes"), data_dir=args.data_dir,
        epochs=args.epochs, batch_size=pick(args.batch_size, 128, 16),
        lr=pick(args.lr, 0.1 if args.opt == "sgd" else 1e-3, 0.01 if args.opt == "sgd" else 1e-3),
        schedule=pick(args.schedule, "onecycle", "poly"), weight_decay=args.wd, train_limit=args.train_limit,
        val_limit=args.val_limit, image_size=args.image_size, amp=args.amp, channels_last=args.channels_last,
        compile=args.compile, device=args.device, pad=args.crop_pad, flip=not args.no_flip,
        memory_budget_mb=args.memory_budget_mb, task=args.task, output_stride=args.output_stride,
        aux=not args.no_aux, scene_size=args.scene_size, crop_size=args.crop_size, workers=args.workers,
        keep_checkpoints=args.keep_checkpoints, head_lr_scale=args.head_lr_scale,
        dataset_kwargs=_dataset_kwargs(args), transform=transform,
        transform_kwargs=transform_kwargs, global_pool=not args.no_global_pool,
        transform_lr_scale=args.transform_lr_scale, zero_init_residual=args.zero_init_residual, where=args.where,
        replace=args.replace, pretrained=_pretrained(args.pretrained), img_size=args.img_size, opt=args.opt,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
        model_ema=args.model_ema, model_ema_decay=args.model_ema_decay, accum_steps=args.accum_steps,
        eval_every=args.eval_every, ignore_index=args.ignore_index, class_weights=args.class_weights,
        eval_mode=args.eval_mode, subset_seed=args.subset_seed, **extra))
    if args.subset_seed != 0 and args.train_limit is None and args.val_limit is None:
        raise CLIError("--subset-seed chooses the --train-limit / --val-limit subsets; give a limit")
    if args.subset_seed != 0 and (seg or config.img_size is not None):  # those subsets have their own rule
        raise CLIError("--subset-seed applies to in-memory classification data; segmentation data and image "
                       "folders at --img-size draw their subsets their own way")
    return config


def _subset_seed(text: str) -> int | None:
    if text.strip().lower() == "first":
        return None
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed (a whole number >= 0) or 'first', got {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0 or 'first', got {seed}")
    return seed


def _pretrained(path: str | None) -> str | None:
    """``--pretrained``: a file or a run folder that exists (what is in it is checked when it is loaded)."""
    if path is not None and not Path(path).exists():
        raise CLIError(f"--pretrained {path}: no such file or run folder")
    return path


def interrupted(args: argparse.Namespace, out: str, what: str) -> int:
    """After Ctrl-C: one line saying what is saved and the command that resumes; exit status 130."""
    from ..train.checkpoint import checkpoint_paths

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
