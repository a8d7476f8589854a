"""EMANet head: the official EMANet / mmseg's ``EMAHead`` (Li et al., ICCV 2019)."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["EMAHead"]


@register_head("ema", modules=("ema",))
class EMAHead(DecodeHead):
    """EMANet head: the official EMANet / mmseg's ``EMAHead`` (Li et al., ICCV 2019).

    conv 3x3 to ``channels`` (mmseg's ``ema_channels=512``), EMA unit (conv 1x1 in, K = 64 bases, T = 3 EM
    steps, conv 1x1 + BN out, residual, ReLU), bottleneck conv 3x3 to ``channels / 2`` (mmseg's
    ``channels=256``), concat with the input + conv 3x3 (mmseg's ``concat_input=True``), classifier.

    Differs from mmseg: mmseg freezes the EMA unit's first 1x1 conv (``requires_grad=False``); here it trains,
    as in the official EMANet code. The bases' moving average uses the module's momentum 0.9 (mmseg 0.1 in
    its own convention: the same update).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels // 2, num_classes, dropout=dropout, concat_input=True)
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("ema", channels, **kwargs)
        self.bottleneck = ConvNormAct(channels, channels // 2, 3)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.context(self.conv_in(x)))
