"""A squeeze-and-attention head (Zhong et al., CVPR 2020), in FCN's layout."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["SAHead"]


@register_head("sanet", modules=("sanet",))
class SAHead(DecodeHead):
    """A squeeze-and-attention head (Zhong et al., CVPR 2020), in FCN's layout.

    conv 3x3, then an SA module (``sanet``, a conv replacement: main 3x3 conv times an up-sampled attention
    from a pooled input, plus that attention) in place of FCN's second conv, concat with the input, conv
    3x3, classifier. SANet's full head also merges SA outputs of several backbone stages and trains a
    mask-classification loss; neither is here (the paper has no official code).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels, num_classes, dropout=dropout, concat_input=True)
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("sanet", channels, out_channels=channels, **kwargs)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(self.conv_in(x))
