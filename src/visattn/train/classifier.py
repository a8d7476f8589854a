"""The classification task's model and evaluation: a classifier built from a recipe, scored on a validation set."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.loader import ImageData, make_loader, shard
from .config import TrainConfig
from .device import autocast
from .distributed import DistInfo, all_reduce_sum
from .recipe import topk_correct

__all__ = ["build_classifier", "build_model", "evaluate"]


def build_classifier(config: TrainConfig, in_chans: int, num_classes: int,
                     input_size: tuple[int, int] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier of ``config`` with its attention module (and input transform), and its model spec.

    The backbone is visattn's, ``timm:NAME`` or ``tv:NAME``, built for ``input_size``
    (:func:`visattn.backbones.external.create_classifier`); the spec rebuilds it.
    """
    from ..backbones.external import create_classifier
    from ..data.loader import data_shape

    if input_size is None:
        input_size = data_shape(config.dataset, config.img_size or config.image_size, config.dataset_kwargs)[1:]
    extra = {"zero_init_residual": True} if config.zero_init_residual else {}
    if not config.global_pool:
        extra["global_pool"] = False
    return create_classifier(config.backbone, num_classes=num_classes, in_chans=in_chans, attention=config.attention,
                             attention_kwargs=dict(config.attention_kwargs), where=config.where,
                             replace=config.replace, position=config.position, transform=config.transform,
                             transform_kwargs=dict(config.transform_kwargs), input_size=tuple(input_size),
                             backbone_kwargs=extra)


def build_model(config: TrainConfig, in_chans: int, num_classes: int,
                input_size: tuple[int, int] | None = None) -> nn.Module:
    """The model of :func:`build_classifier`, without its spec."""
    return build_classifier(config, in_chans, num_classes, input_size)[0]


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, config: TrainConfig, device: torch.device,
             dist: DistInfo) -> tuple[float, float, float | None]:
    """Top-1 accuracy (%), mean loss and top-5 accuracy (%; None for 5 classes or fewer) on ``data``.

    Each rank evaluates its own slice; the counts are summed over ranks.

    Shape:
        - data.images: :math:`(N, C, H, W)` uint8, normalised here with the data's mean and std.
    """
    model.eval()
    part = shard(data, dist.rank, dist.world_size)
    correct = loss_sum = correct5 = 0.0
    for x, y in make_loader(part, 512):
        x, y = x.to(device), y.to(device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        correct5 += topk_correct(logits, y, 5)
    correct, loss_sum, correct5, n = all_reduce_sum([correct, loss_sum, correct5, float(len(part))], dist, device)
    model.train()
    return 100.0 * correct / n, loss_sum / n, (100.0 * correct5 / n if len(data.classes) > 5 else None)
