"""What every decode head shares: the classifier, its dropout, and concatenate-and-fuse (mmseg's BaseDecodeHead).

A head computes its features from the backbone's last map (:meth:`DecodeHead.features`); the base class
fuses them with the head's input when the head concatenates it (``conv_cat``, a 3x3 conv + BN + ReLU on
``[input; features]``) and applies the classifier ``cls_seg`` (Dropout2d, then a 1x1 conv with bias, as
mmseg's ``cls_seg``). :class:`ContextSandwichHead` is the layout of mmseg's ``NLHead`` / ``CCHead``
(conv 3x3, context module, conv 3x3, concat, conv 3x3): its subclasses only choose the context module.

A head builds its own layers first and then calls :meth:`DecodeHead.build_classifier`, so that its
parameters are created (and seeded) in the order of the checkpoints visattn has written: the head's
layers, then ``conv_cat``, then ``cls_seg``.
"""

from __future__ import annotations

import torch
from torch import nn

from ...layers import ConvNormAct

__all__ = ["DecodeHead", "ContextSandwichHead", "classifier"]


def classifier(channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    r"""Dropout2d(``dropout``) + 1x1 conv with bias, ``channels -> num_classes`` (mmseg's ``cls_seg``).

    Shape:
        - Input: :math:`(B, channels, h, w)`
        - Output: :math:`(B, num\_classes, h, w)`
    """
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))


class DecodeHead(nn.Module):
    r"""Base class of the decode heads: ``cls_seg(fuse(x, features(x)))``.

    Args:
        in_channels: input channels :math:`C_{in}` (the backbone's last stage).
        channels: width of the features the classifier reads.
        num_classes: classes :math:`K`.
        dropout: dropout before the classifier.
        concat_input: concatenate the input with the features and fuse them with a 3x3 conv (``conv_cat``).

    Attributes:
        attention_names: the sub-modules that hold attention (tests and ``show`` find them by these names).
        aux_weights: loss weights of the extra outputs :meth:`forward_train` returns.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names: tuple[str, ...] = ()
    aux_weights: dict[str, float] = {}

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1,
                 concat_input: bool = False):
        super().__init__()
        self.in_channels, self.channels, self.num_classes = in_channels, channels, num_classes
        self.dropout_ratio, self.concat_input = dropout, concat_input

    def build_classifier(self) -> None:
        """Make ``conv_cat`` (when the head concatenates its input) and ``cls_seg``; call it after the head's layers."""
        self.conv_cat = (ConvNormAct(self.in_channels + self.channels, self.channels, 3) if self.concat_input
                         else None)
        self.cls_seg = self.new_classifier()

    def new_classifier(self) -> nn.Sequential:
        """A classifier like ``cls_seg`` (Dropout2d + 1x1 conv), for heads with more than one output (DANet)."""
        return classifier(self.channels, self.num_classes, self.dropout_ratio)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's features ``(B, channels, h, w)`` before fusion and classifier; each head defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define features(x)")

    def fuse(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``conv_cat([x; out])`` when the head concatenates its input, else ``out``."""
        return self.conv_cat(torch.cat([x, out], dim=1)) if self.conv_cat is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.fuse(x, self.features(x)))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prediction and the extra outputs the head trains with (name -> logits); none by default."""
        return self(x), {}


class ContextSandwichHead(DecodeHead):
    """conv 3x3 -> context module -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier.

    The layout of mmseg's ``NLHead`` and ``CCHead`` (both ``FCNHead`` subclasses with ``num_convs=2`` and the
    module between the two convs) and of the official CCNet ``RCCAModule`` (conva, RCCA, convb, bottleneck
    on the concatenation). A subclass passes its context module, built before the convs.

    Args:
        in_channels: input channels :math:`C_{in}`.
        channels: width of the convs and of the context module.
        num_classes: classes :math:`K`.
        context: the attention module, ``(B, channels, h, w) -> (B, channels, h, w)``.
        dropout: dropout before the classifier.
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, context: nn.Module, *,
                 dropout: float = 0.1):
        super().__init__(in_channels, channels, num_classes, dropout=dropout, concat_input=True)
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = context
        self.conv_out = ConvNormAct(channels, channels, 3)
        self.build_classifier()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.context(self.conv_in(x)))
