"""Dense prediction: dilated ResNets, decode heads built around the context modules, U-Net / Attention U-Net.

Example:
    >>> import torch
    >>> from visattn.segmentation import create_segmenter
    >>> m = create_segmenter("danet", 4, backbone="tiny", in_chans=1).eval()
    >>> m(torch.randn(2, 1, 40, 33))["out"].shape
    torch.Size([2, 4, 40, 33])
"""

from __future__ import annotations

from torch import nn

from .backbone import DILATED_BACKBONES, DilatedResNet
from .heads import HEADS, DecodeHead, HeadInfo, create_head, head_info, register_head
from .model import Segmenter, default_channels
from .timm_encoder import TIMM_PREFIX, TimmEncoder
from .unet import AttentionUNet, UNet

__all__ = ["DILATED_BACKBONES", "DilatedResNet", "HEADS", "DecodeHead", "HeadInfo", "create_head", "head_info",
           "register_head", "Segmenter",
           "default_channels", "TimmEncoder", "UNet", "AttentionUNet", "create_segmenter", "list_heads", "MODELS"]

#: Whole networks that are not a backbone + head.
MODELS = ("unet", "attention_unet")


def list_heads() -> list[str]:
    """Names :func:`create_segmenter` takes: the decode heads, then ``unet`` and ``attention_unet``."""
    return [*HEADS, *MODELS]


def create_segmenter(head: str, num_classes: int, *, backbone: str = "resnet50", in_chans: int = 3,
                     **kwargs) -> nn.Module:
    """A segmentation network: ``head`` on a dilated ``backbone``, or ``unet`` / ``attention_unet``.

    Args:
        head: a decode head (:data:`HEADS`) or ``unet`` / ``attention_unet``.
        num_classes: classes.
        backbone: ``resnet18/50/101``, ``tiny`` or ``timm:NAME`` (a timm encoder); ignored by the U-Nets
            (``tiny`` gives them base width 16).
        in_chans: input channels.
        **kwargs: :class:`Segmenter` arguments (``output_stride``, ``aux``, ``input_size``, ...) or the U-Net's
            (``base_width``, ``depth``).
    """
    if head in MODELS:
        kwargs.pop("input_size", None)
        kwargs.pop("output_stride", None)
        kwargs.pop("aux", None)
        if kwargs.pop("eval_mode", "whole") != "whole":
            raise ValueError(f"{head}: sliding-window evaluation is the decode heads' Segmenter's; a U-Net "
                             "predicts whole images")
        kwargs.pop("crop_size", None)
        kwargs.pop("stride", None)
        kwargs.setdefault("base_width", 16 if backbone == "tiny" else 64)
        cls = AttentionUNet if head == "attention_unet" else UNet
        return cls(num_classes, in_chans=in_chans, **kwargs)
    if backbone not in DILATED_BACKBONES and not backbone.startswith(TIMM_PREFIX):
        raise ValueError(f"unknown segmentation backbone {backbone!r}; choose from {', '.join(DILATED_BACKBONES)} "
                         "or timm:NAME")
    return Segmenter(head, num_classes, backbone=backbone, in_chans=in_chans, **kwargs)
