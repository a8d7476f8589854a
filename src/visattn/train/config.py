"""The recipe of one training run, as a flat, JSON-friendly dataclass."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["TrainConfig", "SCHEDULES", "SEGMENTATION_FIELDS", "OPTIMIZERS"]

SCHEDULES = ("onecycle", "cosine", "poly")
#: Fields only segmentation runs use; left out of a classification run's digest so its folder name is unchanged.
SEGMENTATION_FIELDS = ("task", "head", "output_stride", "aux", "scene_size", "crop_size", "head_lr_scale")
#: Fields that do not change what a run computes.
NOT_RECIPE = ("epochs", "data_dir", "device", "workers", "memory_budget_mb", "eval_every", "keep_checkpoints")
#: Recipe fields added after the first release, with their defaults (left out of :meth:`TrainConfig.digest`).
_LATER_FIELDS = {"dataset_kwargs": {}, "transform": None, "transform_lr_scale": 0.1, "zero_init_residual": False,
                 "opt": "sgd", "warmup_epochs": 0.0, "mixup": 0.0, "cutmix": 0.0, "model_ema": False,
                 "model_ema_decay": 0.9998, "accum_steps": 1,
                 "where": None, "replace": False, "pretrained": None, "img_size": None, "subset_seed": None,
                 "ignore_index": 255, "class_weights": None, "eval_mode": "whole", "transform_kwargs": {},
                 "global_pool": True}
#: ``opt`` choices (see :mod:`visattn.train.recipe`).
OPTIMIZERS = ("sgd", "adamw")
#: Fields renamed since: old name in config.json -> field. Old run folders still open; digests hash the old name.
RENAMED = {"head_lr_mult": "head_lr_scale"}


def _json_lists(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with tuples as lists, as they read back from config.json."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


@dataclass
class TrainConfig:
    """Everything that decides what a run computes (the output folder and display options aside)."""

    backbone: str = "resnet20"
    attention: str | None = None
    position: str = "standard"
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)  # options of a generated data set (canvas, ...)
    transform: str | None = None  # a transform-role module at the input (e.g. "stn": the STN paper's ST-CNN)
    # the transform's arguments (stn: output_size - the paper's downsampling -, loc_net="paper", ...)
    transform_kwargs: dict[str, Any] = field(default_factory=dict)
    # the input transform's parameters learn at this multiple of lr: at the full lr 0.1 the ST's localisation
    # net died in our runs (theta became the same for every image), so it learns 10x slower by default
    transform_lr_scale: float = 0.1
    zero_init_residual: bool = False  # zero the last BN of each residual branch (torchvision's option)
    # False: the classifier reads the whole last map, not its global average (plaincnn; the STN Lasagne recipe)
    global_pool: bool = True
    # the practitioner's path: any backbone (timm:NAME, tv:NAME), attach's where / replace, pretrained weights
    # (a state_dict file or a run folder), real resolution for image folders (RandomResizedCrop / centre crop)
    where: str | None = None
    replace: bool = False
    pretrained: str | None = None
    img_size: int | None = None
    # --train-limit / --val-limit draw a class-stratified random subset from this seed; None: the first samples
    # (runs recorded before subsets were stratified have no subset_seed in their config.json and read as None)
    subset_seed: int | None = 0
    data_dir: str | None = None
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    schedule: str = "onecycle"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    # the practitioner's recipe (visattn.train.recipe; all but the defaults need timm, the `train` extra)
    opt: str = "sgd"  # sgd (Nesterov momentum) or adamw
    warmup_epochs: float = 0.0  # linear warm-up of the learning rate, in epochs (fractions allowed)
    mixup: float = 0.0  # mixup alpha (0: off)
    cutmix: float = 0.0  # cutmix alpha (0: off)
    model_ema: bool = False  # keep an exponential moving average of the weights and evaluate it too
    model_ema_decay: float = 0.9998
    accum_steps: int = 1  # batches whose gradients add up to one optimiser update
    eval_every: int = 1  # evaluate every N epochs (and after the last)
    pad: int | None = None  # random-crop padding; None: 0 for Fashion-MNIST, 4 otherwise
    flip: bool = True
    train_limit: int | None = None
    val_limit: int | None = None
    image_size: int = 32
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    memory_budget_mb: int = 2048  # ImageFolder data larger than this (MiB) is streamed from disk; same batches
    # segmentation (task="segmentation"): the head or network, and its data
    task: str = "classification"
    head: str = "fcn"  # a decode head (visattn.segmentation.HEADS), or unet / attention_unet
    output_stride: int = 8
    aux: bool = True  # auxiliary FCN head on stage 3, loss weight 0.4
    scene_size: int = 64  # Fashion-MNIST scenes: canvas side
    crop_size: int = 512  # folder data sets: training crop side
    ignore_index: int = 255  # a label left out of loss and mIoU (255 - borders, padding, "other" - always is)
    class_weights: list[float] | None = None  # per-class weights of the segmentation loss
    eval_mode: str = "whole"  # segmentation evaluation: whole images, or "slide" (windows of the training crop)
    workers: int = 2  # DataLoader processes for folder data sets
    keep_checkpoints: int = 2  # the newest N epoch checkpoints stay on disk; 0: every epoch's (a study of training)
    # the decode head's parameters learn at this multiple of lr (PyTorch-Encoding, DANet's code base: 10 for head +
    # aux); the same idea as transform_lr_scale, named alike (config.json of older runs says head_lr_mult)
    head_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.memory_budget_mb < 0:
            raise ValueError(f"memory_budget_mb must be >= 0 (0: always stream), got {self.memory_budget_mb}")
        if self.transform_lr_scale <= 0:
            raise ValueError(f"transform_lr_scale must be positive, got {self.transform_lr_scale}")
        if self.opt not in OPTIMIZERS:
            raise ValueError(f"opt must be one of {OPTIMIZERS}, got {self.opt!r}")
        for name in ("warmup_epochs", "mixup", "cutmix"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.model_ema_decay < 1:
            raise ValueError(f"model_ema_decay must be in (0, 1), got {self.model_ema_decay}")
        for name in ("accum_steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.attention in ("", "none", "None"):
            self.attention = None
        if self.transform in ("", "none", "None"):
            self.transform = None
        if self.transform_kwargs and self.transform is None:
            raise ValueError(f"transform_kwargs {sorted(self.transform_kwargs)} need a transform (e.g. stn)")
        self.transform_kwargs = _json_lists(self.transform_kwargs)
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0 (0: every epoch's), got {self.keep_checkpoints}")
        # JSON has no tuples: keep options as lists so that a recipe read back from config.json is the same
        self.dataset_kwargs = _json_lists(self.dataset_kwargs)
        if self.dataset == "cluttered-fashion-mnist":
            from ..data.cluttered import ClutterSpec

            ClutterSpec.from_options(self.dataset_kwargs)  # bad options fail here, before any training
        elif self.dataset_kwargs:
            raise ValueError(f"dataset {self.dataset!r} takes no options, got {sorted(self.dataset_kwargs)}")
        if self.pad is None:  # flips alone train Fashion-MNIST best in short runs; crops help CIFAR; the
            # cluttered canvas already places the item at random
            self.pad = 0 if self.dataset in ("fashion-mnist", "cluttered-fashion-mnist") else 4
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if self.task not in ("classification", "segmentation"):
            raise ValueError(f"task must be 'classification' or 'segmentation', got {self.task!r}")
        if self.task == "segmentation" and (self.mixup > 0 or self.cutmix > 0):
            raise ValueError("--mixup / --cutmix mix the labels of whole images: classification only, "
                             "not segmentation")
        if self.task == "segmentation" and self.attention is not None:
            raise ValueError("segmentation runs put attention in the decode head: use head=..., not attention")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        for name in ("scene_size", "crop_size"):
            if getattr(self, name) < 8:
                raise ValueError(f"{name} must be >= 8, got {getattr(self, name)}")
        if self.head_lr_scale <= 0:
            raise ValueError(f"head_lr_scale must be positive, got {self.head_lr_scale}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        self._check_practitioner_fields()
        self._check_segmentation_fields()

    def _check_practitioner_fields(self) -> None:
        if self.train_limit is None and self.val_limit is None:
            self.subset_seed = None  # no subset: nothing to draw (and the run's name stays what it was)
        if self.img_size is not None:
            if self.img_size < 1:  # what the network accepts is checked when it is built (check_input_size)
                raise ValueError(f"img_size must be positive, got {self.img_size}")
            if self.dataset != "image-folder" or self.task != "classification":
                raise ValueError(f"img_size (real resolution: RandomResizedCrop / resize + centre crop) applies to "
                                 f"image-folder classification; {self.dataset} has its own image size")
        if self.task == "segmentation" and (self.where or self.replace):
            raise ValueError("where / replace apply to classification runs")
        if self.task == "segmentation" and self.pretrained and not self.backbone.startswith("timm:"):
            raise ValueError("pretrained applies to classification runs and to a timm:NAME segmentation encoder")
        if not self.global_pool:
            self._check_global_pool_option()
        if self.attention is None:  # where / replace place a module: without one (compare's baseline) they do nothing
            self.where, self.replace = None, False
        if ":" in self.backbone and self.task == "classification":
            from ..backbones.external import check_backbone_name

            check_backbone_name(self.backbone)  # an unknown timm / torchvision name fails here, the closest suggested
            if self.dataset == "image-folder" and self.img_size is None:
                from ..backbones.external import preprocessing_for

                self.img_size = int(preprocessing_for(self.backbone)["input_size"][0])  # the weights' own size

    def _check_global_pool_option(self) -> None:
        import inspect

        from ..backbones import BACKBONES

        takes = (self.task == "classification" and ":" not in self.backbone and self.backbone in BACKBONES
                 and "global_pool" in inspect.signature(BACKBONES.get(self.backbone).builder).parameters)
        if not takes:
            with_option = [name for name in BACKBONES.keys()
                           if "global_pool" in inspect.signature(BACKBONES.get(name).builder).parameters]
            raise ValueError(f"global_pool=False (a classifier on the whole last map) is an option of "
                             f"{', '.join(with_option)} classification runs, not of {self.backbone}")

    def _check_segmentation_fields(self) -> None:
        if self.eval_mode not in ("whole", "slide"):
            raise ValueError(f"eval_mode must be 'whole' or 'slide', got {self.eval_mode!r}")
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int) or self.ignore_index < 0:
            raise ValueError(f"ignore_index must be a label >= 0, got {self.ignore_index!r}")
        if self.class_weights is not None:
            from ..segmentation.loss import check_class_weight

            self.class_weights = [float(v) for v in self.class_weights]
            check_class_weight(self.class_weights, len(self.class_weights))  # finite, >= 0, not all zero
        if self.task == "classification" and (self.ignore_index != 255 or self.class_weights is not None
                                              or self.eval_mode != "whole"):
            raise ValueError("ignore_index / class_weights / eval_mode apply to segmentation runs")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        if "subset_seed" not in data:  # recorded before limits were stratified: they took the first samples
            data = {**data, "subset_seed": None}
        data = {RENAMED.get(k, k): v for k, v in data.items()}
        return cls(**{k: v for k, v in data.items() if k in known})

    def same_run(self, other: TrainConfig) -> bool:
        """Whether ``other`` computes the same thing (the epoch budget may grow: a run can be extended)."""
        a, b = self.to_dict(), other.to_dict()
        for d in (a, b):
            for key in NOT_RECIPE:
                d.pop(key)
        return a == b

    def digest(self) -> str:
        """Short hash of the recipe, for naming runs."""
        d = self.to_dict()
        for key in NOT_RECIPE[1:] + (SEGMENTATION_FIELDS if self.task == "classification" else ()):
            d.pop(key)
        for key, default in _LATER_FIELDS.items():  # fields added later hash only when set: old names still resume
            if d.get(key) == default:
                d.pop(key)
        for old, new in RENAMED.items():  # renamed fields hash under their first name: folder names stay
            if new in d:
                d[old] = d.pop(new)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
