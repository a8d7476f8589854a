"""Non-local head: mmseg's ``NLHead`` (Wang et al., CVPR 2018, as a segmentation head)."""

from __future__ import annotations

from ... import create
from .base import ContextSandwichHead
from .builder import register_head

__all__ = ["NLHead"]


@register_head("nonlocal", modules=("nonlocal",))
class NLHead(ContextSandwichHead):
    """Non-local head: mmseg's ``NLHead`` (Wang et al., CVPR 2018, as a segmentation head).

    conv 3x3, non-local block (embedded Gaussian, inter channels C/2, energies scaled by :math:`d^{-1/2}`:
    mmseg's ``use_scale=True``), conv 3x3, concat with the input, conv 3x3, classifier.

    Differs from mmseg: visattn's ``nonlocal`` has a bias on :math:`W_z` before its BN (mmcv's
    ``NonLocal2d.conv_out`` has none), one extra ``channels`` parameters; both zero-initialise the BN so the
    block starts as the identity.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, create("nonlocal", channels, scaled=True, **kwargs))
