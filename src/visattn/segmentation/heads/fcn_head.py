"""FCN head (Long et al., CVPR 2015), as mmseg's ``FCNHead``: the baseline decode head, without attention."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["FCNHead"]


@register_head("fcn")
class FCNHead(DecodeHead):
    """FCN head as mmseg's ``FCNHead``: ``num_convs`` 3x3 convs, optional concat, classifier.

    With ``concat_input`` the input is concatenated with the convs' output and fused by one more 3x3 conv
    (mmseg's ``conv_cat``). mmseg's FCN R50-D8 head is ``num_convs=2, concat_input=True``; its auxiliary
    head on stage 3 is ``num_convs=1, concat_input=False`` at half the width.

    Args:
        in_channels: input channels :math:`C_{in}`.
        channels: width of the convs.
        num_classes: classes :math:`K`.
        num_convs: 3x3 convs before the classifier.
        concat_input: concatenate the input with the convs' output (then a 3x3 fusion conv).
        dropout: dropout before the classifier.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, num_convs: int = 2,
                 concat_input: bool = True, dropout: float = 0.1):
        super().__init__(in_channels, channels, num_classes, dropout=dropout, concat_input=concat_input)
        convs = [ConvNormAct(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)
