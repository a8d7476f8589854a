"""Base-OC head: the official OCNet ``ResNet_Base_OC`` head (Yuan et al., 2018)."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["OCHead"]


@register_head("oc", modules=("oc",))
class OCHead(DecodeHead):
    """Base-OC head: the official OCNet ``ResNet_Base_OC`` head (Yuan et al., 2018).

    conv 3x3 -> base-OC module (object context at key / value width ``channels / 2``, concatenated with its
    input, 1x1 conv + BN + ReLU) -> classifier. mmseg has no OCNet head (it has OCRNet, a later paper).

    Differs from the official code: its first conv has a bias and InPlaceABN (leaky ReLU 0.01); here
    conv without bias + BN + ReLU; the module's dropout (official 0.05) is the classifier's 0.1 here.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context.context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels, num_classes, dropout=dropout)
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("oc", channels, out_channels=channels, **kwargs)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(self.conv_in(x))
