"""What differs between training tasks: data, model, loss, metric. The loop in :mod:`.trainer` is shared.

A task object answers the trainer's questions for one :class:`~.config.TrainConfig`:

- :meth:`Task.load_data`: training and validation data;
- :meth:`Task.build_model` and :meth:`Task.sample_shape` (for FLOPs);
- :meth:`Task.model_and_input`: the model and one input's shape from the data set's facts, no data read
  (what ``visattn compare`` measures the cost of);
- :meth:`Task.train_loader`: an iterable of ``(inputs, targets)`` batches with ``len`` and ``set_epoch``;
- :meth:`Task.loss`: the training loss of the model's output;
- :meth:`Task.evaluate`: the validation scores, summed over DDP ranks, with the task's headline
  :attr:`Task.metric` (``accuracy`` for classification, ``miou`` for segmentation) and ``loss``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import dataset_info
from ..data.loader import data_shape
from . import classifier
from .config import TrainConfig
from .device import autocast
from .distributed import DistInfo, all_reduce_sum
from .localisation import input_transform, measure_localisation

__all__ = ["Task", "ClassificationTask", "SegmentationTask", "get_task", "TASKS"]

TASKS = ("classification", "segmentation")


class Task:
    """The interface the trainer uses (see the module docstring)."""

    name: str = ""
    metric: str = ""  # the key of the headline score in results (higher is better)
    metric_title: str = ""
    #: build_model loads ``config.pretrained`` itself (into part of the model), so the trainer does not
    pretrained_in_build: bool = False
    #: the model spec of the last :meth:`build_model` (what rebuilds it), when the task has one
    spec: dict[str, Any] | None = None

    def load_data(self, config: TrainConfig):
        raise NotImplementedError

    def build_model(self, config: TrainConfig, train) -> nn.Module:
        raise NotImplementedError

    def sample_shape(self, config: TrainConfig, train) -> tuple[int, ...]:
        raise NotImplementedError

    def model_and_input(self, config: TrainConfig) -> tuple[nn.Module, tuple[int, ...]]:
        """The run's model built from the data set's facts without reading its data, and one input's shape."""
        raise NotImplementedError

    def run_info(self, config: TrainConfig, train) -> dict[str, Any] | None:
        """What a run folder keeps in run.json to rebuild and use its model; None: no run.json."""
        return None

    def train_loader(self, config: TrainConfig, train, dist: DistInfo):
        raise NotImplementedError

    def loss(self, model: nn.Module, config: TrainConfig, output, target: torch.Tensor) -> torch.Tensor:
        """The training loss of ``model``'s ``output`` (``model`` unwrapped from DDP / compile)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, val, config: TrainConfig, device: torch.device,
                 dist: DistInfo) -> dict[str, Any]:
        raise NotImplementedError

    def record(self, scores: dict[str, Any]) -> dict[str, Any]:
        """The per-epoch ``metrics.jsonl`` fields of ``scores`` (besides the loss)."""
        return {f"val_{self.metric}": scores[self.metric]}

    def summary(self, scores: dict[str, Any]) -> str:
        return f"{self.metric_title} {scores[self.metric]:.2f}%"

    def describe(self, config: TrainConfig) -> str:
        raise NotImplementedError


class ClassificationTask(Task):
    """Image classification: the backbone with its attention module, cross-entropy, top-1 accuracy."""

    name, metric, metric_title = "classification", "accuracy", "val acc"

    def load_data(self, config: TrainConfig):
        from ..data.loader import load_dataset

        if config.img_size is not None:  # an image folder at real resolution, decoded in DataLoader workers
            return self._image_files(config)
        return load_dataset(config.dataset, config.data_dir, train_limit=config.train_limit,
                            val_limit=config.val_limit, image_size=config.image_size,
                            memory_budget_mb=config.memory_budget_mb, dataset_kwargs=config.dataset_kwargs,
                            subset_seed=config.subset_seed)

    @staticmethod
    def _image_files(config: TrainConfig):
        from ..backbones.external import preprocessing_for
        from ..data.image_files import load_image_files
        from ..data.loader import check_data_dir

        if config.data_dir is None:
            raise ValueError("image-folder needs --data-dir with train/ and val/ (or test/) class folders")
        check_data_dir(config.data_dir)
        weights = preprocessing_for(config.backbone)  # timm's pretrained_cfg / torchvision's meta; None: own nets
        options = {} if weights is None else {"mean": weights["mean"], "std": weights["std"],
                                              "crop_pct": weights["crop_pct"],
                                              "interpolation": weights["interpolation"]}
        train, val = load_image_files(config.data_dir, config.img_size, **options)
        seed = 0 if config.subset_seed is None else config.subset_seed
        return train.subset(config.train_limit, seed), val.subset(config.val_limit, seed)

    def build_model(self, config: TrainConfig, train) -> nn.Module:
        from ..backbones.external import check_input_size

        size = train.image_shape[-2:]
        model, self.spec = classifier.build_classifier(config, train.in_chans, len(train.classes), size)
        check_input_size(model, train.in_chans, train.image_shape[-2:], name=config.backbone)
        return model

    def model_and_input(self, config: TrainConfig) -> tuple[nn.Module, tuple[int, ...]]:
        """The classifier from the registered data set's facts (an image folder: its class folders, no image read).

        Shape:
            - the input: :math:`(1, C, H, W)` at the run's image size.
        """
        in_chans, height, width = data_shape(config.dataset, config.img_size or config.image_size,
                                             config.dataset_kwargs)
        num_classes = dataset_info(config.dataset, "classification").num_classes
        if num_classes is None:  # the data names its classes: count the training split's class folders
            if config.data_dir is None:
                raise ValueError(f"{config.dataset} needs --data-dir with train/ and val/ (or test/) class folders")
            train = Path(config.data_dir) / "train"
            num_classes = sum(1 for p in train.iterdir() if p.is_dir()) if train.is_dir() else 0
            if num_classes < 1:
                raise ValueError(f"{train}: no class folders")
        model, self.spec = classifier.build_classifier(config, in_chans, num_classes, (height, width))
        return model, (1, in_chans, height, width)

    def run_info(self, config: TrainConfig, train) -> dict[str, Any]:
        """What a run folder keeps to rebuild and use its model: model spec, preprocessing, class names."""
        preprocessing = getattr(train, "preprocessing", None) or {
            "input_size": list(train.image_shape[-2:]), "mean": list(train.mean), "std": list(train.std),
            "channels": train.in_chans,
            "resize": "squash to image_size" if config.dataset == "image-folder" else "none (fixed-size data)"}
        return {"model": self.spec, "preprocessing": preprocessing, "classes": list(train.classes)}

    def sample_shape(self, config: TrainConfig, train) -> tuple[int, ...]:
        return (1, *train.image_shape)

    def train_loader(self, config: TrainConfig, train, dist: DistInfo):
        from ..data.loader import make_loader  # in memory, or streamed from disk for large ImageFolder sets

        workers = {} if getattr(train, "in_memory", True) else {"workers": config.workers}
        return make_loader(train, config.batch_size, shuffle=True, augment=True, pad=config.pad, flip=config.flip,
                           seed=config.seed, rank=dist.rank, world_size=dist.world_size,
                           drop_last=len(train) >= config.batch_size * dist.world_size, **workers)

    def loss(self, model: nn.Module, config: TrainConfig, output, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, label_smoothing=config.label_smoothing)

    def evaluate(self, model, val, config, device, dist) -> dict[str, Any]:
        """Top-1 (and top-5) accuracy and loss, and how an input transform localises the items.

        The ``localisation`` measures (:func:`~visattn.train.localisation.measure_localisation`, on rank 0)
        come with a transform at the input on data that know where their items are (cluttered Fashion-MNIST).
        """
        accuracy, loss, top5 = classifier.evaluate(model, val, config, device, dist)
        scores = {"accuracy": accuracy, "loss": loss, **({"top5": top5} if top5 is not None else {})}
        if dist.is_main and input_transform(model) is not None and hasattr(val.images, "item_centres"):
            scores["localisation"] = measure_localisation(model, val, device=device)
        return scores

    def record(self, scores: dict[str, Any]) -> dict[str, Any]:
        """``val_accuracy``, ``val_top5`` and ``loc_<measure>`` of each localisation measure (if measured)."""
        top5 = {"val_top5": scores["top5"]} if "top5" in scores else {}
        localisation = {f"loc_{k}": v for k, v in scores.get("localisation", {}).items()}
        return {"val_accuracy": scores["accuracy"], **top5, **localisation}

    def summary(self, scores: dict[str, Any]) -> str:
        top5 = f", top-5 {scores['top5']:.2f}%" if "top5" in scores else ""
        loc = scores.get("localisation")
        where = (f"; window |det| {loc['mean_abs_det']:.2f}, {loc['centre_distance_px']:.1f} px from the item "
                 f"(one fixed window: {loc['baseline_distance_px']:.1f})") if loc else ""
        return f"{self.metric_title} {scores['accuracy']:.2f}%{top5}{where}"

    def describe(self, config: TrainConfig) -> str:
        return (f"{config.backbone}" + (f" with {config.transform} at the input" if config.transform else "")
                + f" + {config.attention or 'no attention'}")


class SegmentationTask(Task):
    """Semantic segmentation: a decode head on a dilated backbone (or a U-Net).

    Per-pixel cross-entropy with the ignore index (and optional class weights) plus the weighted auxiliary
    losses; mIoU from a confusion matrix summed over ranks, evaluated on whole images or sliding windows of
    the training crop (``eval_mode``).
    """

    name, metric, metric_title = "segmentation", "miou", "val mIoU"
    pretrained_in_build = True  # a timm:NAME encoder loads its weights file when it is built

    def load_data(self, config: TrainConfig):
        from ..data.segmentation import load_segmentation

        return load_segmentation(config.dataset, config.data_dir, train_limit=config.train_limit,
                                 val_limit=config.val_limit, scene_size=config.scene_size)

    def meta(self, config: TrainConfig):
        from ..data.segmentation import segmentation_meta

        return segmentation_meta(config.dataset, config.data_dir, scene_size=config.scene_size,
                                 crop_size=config.crop_size)

    def build_model(self, config: TrainConfig, train=None) -> nn.Module:
        from ..segmentation import create_segmenter
        from ..segmentation.loss import check_class_weight

        meta = self.meta(config)
        check_class_weight(config.class_weights, meta.num_classes)  # a wrong count fails before any data is read
        slide = {"eval_mode": "slide", "crop_size": meta.input_size} if config.eval_mode == "slide" else {}
        weights = {"pretrained": config.pretrained} if config.pretrained else {}
        return create_segmenter(config.head, meta.num_classes, backbone=config.backbone, in_chans=meta.in_chans,
                                input_size=meta.input_size, output_stride=config.output_stride, aux=config.aux,
                                **slide, **weights, **dict(config.attention_kwargs))

    def model_and_input(self, config: TrainConfig) -> tuple[nn.Module, tuple[int, ...]]:
        return self.build_model(config), self.sample_shape(config)

    def sample_shape(self, config: TrainConfig, train=None) -> tuple[int, ...]:
        meta = self.meta(config)
        return (1, meta.in_chans, *meta.input_size)

    def train_loader(self, config: TrainConfig, train, dist: DistInfo):
        from ..data.segmentation import FolderLoader, SegBatchLoader, SegData, folder_stats

        drop_last = len(train) >= config.batch_size * dist.world_size
        if isinstance(train, SegData):
            return SegBatchLoader(train, config.batch_size, shuffle=True, augment=True, flip=config.flip,
                                  seed=config.seed, rank=dist.rank, world_size=dist.world_size, drop_last=drop_last)
        mean, std = folder_stats(train)
        return FolderLoader(train, mean, std, batch_size=config.batch_size, crop=(config.crop_size,) * 2,
                            shuffle=True, seed=config.seed, rank=dist.rank, world_size=dist.world_size,
                            drop_last=drop_last, workers=config.workers, flip=config.flip)

    def _val_batches(self, val, config: TrainConfig, dist: DistInfo):
        from ..data.segmentation import FolderLoader, SegBatchLoader, SegData, folder_stats

        if isinstance(val, SegData):
            part = SegData(val.images[dist.rank::dist.world_size], val.masks[dist.rank::dist.world_size],
                           val.classes, val.mean, val.std)
            return SegBatchLoader(part, max(1, min(256, config.batch_size * 4)))
        mean, std = folder_stats(val)
        return FolderLoader(val, mean, std, rank=dist.rank, world_size=dist.world_size, workers=config.workers,
                            pad_shards=False)

    def loss(self, model: nn.Module, config: TrainConfig, output, target: torch.Tensor) -> torch.Tensor:
        from ..segmentation.loss import segmentation_loss

        return segmentation_loss(output, target, model.loss_weights, ignore_index=config.ignore_index,
                                 class_weight=config.class_weights)

    @torch.no_grad()
    def evaluate(self, model, val, config, device, dist) -> dict[str, Any]:
        from ..data.segmentation import IGNORE_INDEX
        from .metrics import confusion_matrix, segmentation_scores

        model.eval()
        k = len(val.classes)
        confusion = torch.zeros(k, k, dtype=torch.float64, device=device)
        loss_sum = pixels = 0.0
        for x, y in self._val_batches(val, config, dist):
            x, y = x.to(device), y.to(device)
            if config.ignore_index != IGNORE_INDEX:  # the run's ignored label counts as no label
                y = y.masked_fill(y == config.ignore_index, IGNORE_INDEX)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, config.amp):
                logits = model(x)["out"].float()
            loss_sum += F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum").item()
            pixels += float((y != IGNORE_INDEX).sum())
            confusion += confusion_matrix(logits.argmax(1), y, k, IGNORE_INDEX).to(confusion)
        if dist.enabled:
            torch.distributed.all_reduce(confusion)
        loss_sum, pixels = all_reduce_sum([loss_sum, pixels], dist, device)
        model.train()
        scores = segmentation_scores(confusion.cpu())
        per_class = {name: (None if math.isnan(v) else v)  # NaN: the class is in neither truth nor prediction
                     for name, v in zip(val.classes, scores["per_class_iou"], strict=True)}
        return {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"], "per_class_iou": per_class,
                "loss": loss_sum / max(pixels, 1.0), "confusion": confusion.cpu().long().tolist()}

    def record(self, scores: dict[str, Any]) -> dict[str, Any]:
        return {"val_miou": scores["miou"], "val_pixel_accuracy": scores["pixel_accuracy"]}

    def summary(self, scores: dict[str, Any]) -> str:
        return f"val mIoU {scores['miou']:.2f}%, pixel acc {scores['pixel_accuracy']:.2f}%"

    def describe(self, config: TrainConfig) -> str:
        if config.head in ("unet", "attention_unet"):
            return config.head
        return f"{config.backbone}-D{config.output_stride} + {config.head} head"


def get_task(config: TrainConfig) -> Task:
    """The task object of ``config.task``."""
    if config.task == "segmentation":
        return SegmentationTask()
    if config.task == "classification":
        return ClassificationTask()
    raise ValueError(f"unknown task {config.task!r}; expected one of {TASKS}")
