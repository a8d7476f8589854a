"""Multi-head self-attention (Vaswani et al., 2017) as a context head, in the non-local head's layout."""

from __future__ import annotations

import torch
from torch import nn

from ... import create
from .base import ContextSandwichHead
from .builder import register_head

__all__ = ["MHSAHead", "Residual"]


class Residual(nn.Module):
    """``x + inner(x)``: the residual of a Transformer sub-layer around a module that has none.

    Shape:
        - Input: :math:`(B, C, h, w)`
        - Output: :math:`(B, C, h, w)`
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


@register_head("mhsa", modules=("mhsa",))
class MHSAHead(ContextSandwichHead):
    """Multi-head self-attention as a context head (Vaswani et al., 2017), in the non-local head's layout.

    conv 3x3, ``x + MHSA(x)`` (8 heads, the positions as tokens), conv 3x3, concat, conv 3x3, classifier.
    No paper defines this head: it is the NLHead with the non-local block replaced by MHSA and a residual
    around it (the residual of the Transformer's sub-layer; the ``mhsa`` module has none of its own).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("context.inner",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, Residual(create("mhsa", channels, **kwargs)))
