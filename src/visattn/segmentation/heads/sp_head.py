"""Strip-pooling head: the official SPNet ``SPHead`` (Hou et al., CVPR 2020)."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["SPHead"]


@register_head("strip", modules=("mixed_pool",))
class SPHead(DecodeHead):
    """Strip-pooling head: the official SPNet ``SPHead`` (Hou et al., CVPR 2020).

    1x1 conv to ``C_in / 2`` (+ BN + ReLU), two mixed-pooling modules (``mixed_pool``: pyramid pools and
    strip pools, with their residual), conv 3x3 to ``channels / 2``, classifier. The official pool sizes
    (20, 12) are kept; on small feature maps the adaptive pools up-sample, which PyTorch allows.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context1", "context2")

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels // 2, num_classes, dropout=dropout)
        mid = in_channels // 2
        self.trans = ConvNormAct(in_channels, mid, 1)
        self.context1 = create("mixed_pool", mid, **kwargs)
        self.context2 = create("mixed_pool", mid, **kwargs)
        self.score = ConvNormAct(mid, channels // 2, 3)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.context2(self.context1(self.trans(x))))
