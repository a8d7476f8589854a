"""A Transformer encoder layer (MHSA + FFN, Add & Norm) as context, in the non-local head's layout."""

from __future__ import annotations

from ... import create
from .base import ContextSandwichHead
from .builder import register_head

__all__ = ["TransformerHead"]


@register_head("transformer", modules=("transformer",))
class TransformerHead(ContextSandwichHead):
    """A Transformer encoder layer (MHSA + FFN, Add & Norm) as context, in the non-local head's layout.

    Close to SETR-naive's use of self-attention but on the dilated CNN's features, one layer, no position
    embedding by default (``pos_embed="sine"`` adds DETR's).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, create("transformer", channels, **kwargs))
