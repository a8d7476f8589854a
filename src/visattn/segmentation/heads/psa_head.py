"""PSANet head: the official ``PSANet`` (hszhao/semseg) / mmseg's ``PSAHead`` (Zhao et al., ECCV 2018)."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["PSAHead"]


@register_head("psa", modules=("psa",), size_bound=True)
class PSAHead(DecodeHead):
    """PSANet head: the official ``PSANet`` (hszhao/semseg) / mmseg's ``PSAHead`` (Zhao et al., ECCV 2018).

    PSA module on the backbone output (collect + distribute branches at ``C_in / 4``, concatenated,
    projected back to :math:`C_{in}`, concatenated with the input), then conv 3x3 to ``channels`` and the
    classifier. Bound to the feature size (its masks have (2h-1)(2w-1) channels).

    Differs from mmseg / official: visattn's ``psa`` fuses the concatenation ``[x, context]`` back to
    :math:`C_{in}` with a 1x1 conv + BN + ReLU (a module keeps its input width), so the head's 3x3
    bottleneck reads :math:`C_{in}` channels instead of :math:`2 C_{in}`; the mask size is the feature size
    (mmseg: a fixed ``mask_size=(97, 97)`` for 769 crops, with ``shrink_factor=2``).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)` with ``(h, w) == feature_size``
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, feature_size: tuple[int, int],
                 dropout: float = 0.1, **kwargs):
        super().__init__(in_channels, channels, num_classes, dropout=dropout)
        self.context = create("psa", in_channels, feature_size=tuple(feature_size), **kwargs)
        self.bottleneck = ConvNormAct(in_channels, channels, 3)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.context(x))
