"""ASP-OC head: the official OCNet ``ResNet_ASP_OC`` head (Yuan et al., 2018)."""

from __future__ import annotations

import torch

from ... import create
from .base import DecodeHead
from .builder import register_head

__all__ = ["ASPOCHead"]


@register_head("asp_oc", modules=("asp_oc",))
class ASPOCHead(DecodeHead):
    """ASP-OC head: the official OCNet ``ResNet_ASP_OC`` head (Yuan et al., 2018).

    The ASP-OC module on the backbone output (five branches at ``channels / 2`` each: conv 3x3 + object
    context, 1x1 conv, three dilated 3x3 convs (12, 24, 36), concatenated, 1x1 conv to ``channels``), then
    the classifier. As official (``ASP_OC_Module(2048, 256)`` then a 512 -> K classifier).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context.oc",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels, num_classes, dropout=dropout)
        self.context = create("asp_oc", in_channels, out_channels=channels, inner_channels=channels // 2, **kwargs)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(x)
