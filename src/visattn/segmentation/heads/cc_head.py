"""CCNet head: the official ``RCCAModule`` / mmseg's ``CCHead`` (Huang et al., ICCV 2019)."""

from __future__ import annotations

from ... import create
from .base import ContextSandwichHead
from .builder import register_head

__all__ = ["CCHead"]


@register_head("cc", modules=("cc",))
class CCHead(ContextSandwichHead):
    """CCNet head: the official ``RCCAModule`` / mmseg's ``CCHead`` (Huang et al., ICCV 2019).

    conv 3x3, recurrent criss-cross attention (R = 2, shared weights), conv 3x3, concat with the input,
    conv 3x3, classifier. Same layout and widths as mmseg (Q, K at C/8 with biases, gamma starting at 0).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, recurrence: int = 2, **kwargs):
        super().__init__(in_channels, channels, num_classes,
                         create("cc", channels, recurrence=recurrence, **kwargs))
