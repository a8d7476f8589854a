"""U-Net (Ronneberger et al., MICCAI 2015) and Attention U-Net (Oktay et al., MIDL 2018, arXiv:1804.03999).

Both have ``depth`` down-samplings (2x2 max pool) with two 3x3 conv + BN + ReLU per level (padding 1, so
the output has the input's size: the original U-Net's unpadded convs crop, BN is the common modern
choice and the Attention U-Net's), widths doubling from ``base_width``, a transposed-conv up-sampling and
concatenation with the skip at each decoder level, and a 1x1 classifier.

Any input size works: pooling uses ``ceil_mode`` and the up-sampled map is cropped to its skip's size.
The Attention U-Net gates each skip connection with :func:`visattn.create` ``("attention_gate", ...)``,
gated by the coarser decoder feature (the gating signal g of Oktay et al., Fig. 1), before concatenation.
The gate needs its skip map to be at least 3 x 3, so the input must be at least ``3 * 2**(depth-1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import create
from ..layers import ConvNormAct

__all__ = ["UNet", "AttentionUNet"]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(cin, cout, 3), ConvNormAct(cout, cout, 3))


class UNet(nn.Module):
    r"""U-Net with ``depth`` levels; set ``attention_gates=True`` (or use :class:`AttentionUNet`) for gated skips.

    Args:
        num_classes: classes :math:`K`.
        in_chans: input channels.
        base_width: channels of the first level (64 in the paper).
        depth: down-samplings (4 in the paper).
        attention_gates: gate each skip with an additive attention gate (Attention U-Net).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: ``{"out": (B, K, H, W)}`` (the segmenters' output format)

    Example:
        >>> UNet(3, in_chans=1, base_width=8, depth=3)(torch.randn(1, 1, 29, 40))["out"].shape
        torch.Size([1, 3, 29, 40])
    """

    def __init__(self, num_classes: int, *, in_chans: int = 3, base_width: int = 64, depth: int = 4,
                 attention_gates: bool = False):
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet: depth must be >= 1, got {depth}")
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.depth, self.attention_gates = depth, attention_gates
        self.min_size = 3 * 2 ** (depth - 1) if attention_gates else 1
        self.encoder = nn.ModuleList([_double_conv(in_chans, widths[0])]
                                     + [_double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.decoder = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(depth))
        self.gates = (nn.ModuleList(create("attention_gate", widths[i], gating_channels=widths[i + 1])
                                    for i in range(depth)) if attention_gates else None)
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.loss_weights = {"out": 1.0}
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"{type(self).__name__}: input must be at least {self.min_size} x {self.min_size} "
                             f"for depth {self.depth} (the attention gates need 3 x 3 skips), got "
                             f"{tuple(x.shape)}")
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            skip = skips[i]
            if self.gates is not None:
                skip = self.gates[i](skip, x)  # gating signal: the coarser decoder feature
            up = self.up[i](x)[..., :skip.shape[-2], :skip.shape[-1]]  # ceil-mode pooling: crop the extra row
            x = self.decoder[i](torch.cat([skip, up], dim=1))
        return {"out": self.classifier(x)}


class AttentionUNet(UNet):
    """Attention U-Net (Oktay et al., 2018): :class:`UNet` with an attention gate on every skip connection."""

    def __init__(self, num_classes: int, *, in_chans: int = 3, base_width: int = 64, depth: int = 4):
        super().__init__(num_classes, in_chans=in_chans, base_width=base_width, depth=depth, attention_gates=True)


