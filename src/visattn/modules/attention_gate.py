"""Additive attention gate of Attention U-Net.

Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori, McDonagh, Hammerla, Kainz, Glocker, Rueckert.
"Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018. https://arxiv.org/abs/1804.03999
-- official code: https://github.com/ozan-oktay/Attention-Gated-Networks (``GridAttentionBlock2D``)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LayerType, check_input, check_size, create_norm
from ..registry import register

__all__ = ["AttentionGate"]


@register(
    "attention_gate",
    title="Additive attention gate (AG)",
    paper="Attention U-Net: Learning Where to Look for the Pancreas",
    authors="Oktay et al.",
    venue="MIDL",
    year=2018,
    arxiv="1804.03999",
    code="https://github.com/ozan-oktay/Attention-Gated-Networks",
    family="attention-gate",
    domain="spatial",
    weights="conv",
    applied="scale",
    role="gate",
    placement="decoder_skip",
    complexity="O(HW)",
    note=(
        "Follows the official GridAttentionBlock2D (mode 'concatenation'): theta = conv kernel = stride = 2 "
        "without bias on x, phi = 1x1 conv with bias on g, resampled (bilinear) to theta's grid, ReLU of the sum, "
        "psi = 1x1 conv with bias to one channel, sigmoid, bilinear resize to x's size, x * alpha, then the "
        "output transform W = conv1x1 (bias) + BN; inter channels C // 2. The paper's eq. 1-2 end at x * alpha: "
        "output_transform=False gives it. Departures, both no-ops at even sizes: x is zero-padded at the "
        "bottom / right to a multiple of the sub-sampling factor so that odd sizes keep their last row / column "
        "(the official strided conv drops it); resizes use align_corners=False (PyTorch's default since 0.4; the "
        "official F.upsample leaves it unset). H, W >= 3 so that theta's grid is at least 2 x 2 (torch.export "
        "with dynamic sizes specialises a size that may be 1); g may have any size. visattn keeps PyTorch's "
        "default init instead of the official kaiming init."
    ),
)
class AttentionGate(nn.Module):
    r"""Additive attention gate: a coarser gating signal :math:`g` selects the positions of :math:`x`.

    .. math::
        q = \psi^T\,\sigma_1(W_x^T x + \mathrm{Up}(W_g^T g + b_g)) + b_\psi,\quad
        \alpha = \mathrm{Up}(\sigma_2(q)),\quad y = W(x \odot \alpha)

    where :math:`W_x` (``theta``) is a conv with kernel = stride = ``sub_sample_factor`` and no bias,
    :math:`W_g` (``phi``) and :math:`\psi` (``psi``) are 1x1 convs with bias, :math:`\sigma_1` ReLU,
    :math:`\sigma_2` sigmoid, Up a bilinear resize (first to :math:`W_x^T x`'s grid, then to :math:`x`'s
    size) and :math:`W` the official output transform (1x1 conv + BN; identity when
    ``output_transform=False``, the paper's :math:`\hat{x} = x\,\alpha`).

    Args:
        channels: channels :math:`F_l` of :math:`x`.
        gating_channels: channels :math:`F_g` of :math:`g` (default: ``channels``).
        inter_channels: channels :math:`F_{int}` of the additive attention (default: ``channels // 2``, at
            least 1).
        sub_sample_factor: kernel and stride of :math:`W_x` (official: 2).
        output_transform: apply the official :math:`W` (1x1 conv + norm) after :math:`x \odot \alpha`.
        norm_layer: the norm of :math:`W` (``"batch"``).

    Shape:
        - Input: :math:`x` of shape :math:`(B, F_l, H, W)` with :math:`H, W \ge` ``min_size`` (3 for the
          factor 2: the coarse grid :math:`\lceil H/2 \rceil \times \lceil W/2 \rceil` is at least 2 x 2), and
          :math:`g` of shape :math:`(B, F_g, H_g, W_g)`, any :math:`H_g, W_g` (usually the coarse grid's)
        - Output: :math:`(B, F_l, H, W)`

    The ``gate`` submodule (sigmoid) outputs :math:`\sigma_2(q)` on the coarse grid;
    :meth:`attention_map` returns :math:`\alpha` resized to :math:`x`, shape :math:`(B, 1, H, W)`.

    Example:
        >>> ag = AttentionGate(64, gating_channels=128)
        >>> x, g = torch.randn(2, 64, 15, 20), torch.randn(2, 128, 8, 10)
        >>> ag(x, g).shape
        torch.Size([2, 64, 15, 20])
        >>> ag.attention_map(x, g).shape
        torch.Size([2, 1, 15, 20])
    """

    def __init__(self, channels: int, *, gating_channels: int | None = None, inter_channels: int | None = None,
                 sub_sample_factor: int = 2, output_transform: bool = True, norm_layer: LayerType = "batch"):
        super().__init__()
        name = type(self).__name__
        gating_channels = channels if gating_channels is None else int(gating_channels)
        inter_channels = max(1, channels // 2) if inter_channels is None else int(inter_channels)
        if inter_channels < 1 or gating_channels < 1:
            raise ValueError(f"{name}: inter_channels and gating_channels must be >= 1, "
                             f"got {inter_channels!r}, {gating_channels!r}")
        if sub_sample_factor < 1:
            raise ValueError(f"{name}: sub_sample_factor must be >= 1, got {sub_sample_factor!r}")
        self.channels = channels
        self.gating_channels = gating_channels
        self.sub_sample_factor = int(sub_sample_factor)
        # The coarse grid ceil(H / s) x ceil(W / s) must be at least 2 x 2: torch.export with dynamic H, W
        # specialises any intermediate size that may be 1.
        self.min_size = self.sub_sample_factor + 1 if self.sub_sample_factor > 1 else 1
        # Names as the official _GridAttentionBlockND, so its state dict loads as it is.
        self.theta = nn.Conv2d(channels, inter_channels, sub_sample_factor, sub_sample_factor, bias=False)
        self.phi = nn.Conv2d(gating_channels, inter_channels, 1)
        self.psi = nn.Conv2d(inter_channels, 1, 1)
        self.gate = nn.Sigmoid()
        self.W = (nn.Sequential(nn.Conv2d(channels, channels, 1), create_norm(norm_layer, channels))
                  if output_transform else nn.Identity())

    def _check(self, x: torch.Tensor, g: torch.Tensor) -> None:
        check_input(self, x, self.channels, name="x")
        check_input(self, g, self.gating_channels, name="g")
        check_size(self, x, self.min_size, f"the grid of W_x, ceil(H / {self.sub_sample_factor}), must be >= 2")
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"{type(self).__name__}: x and g must have the same batch size, "
                             f"got {tuple(x.shape)} and {tuple(g.shape)}")

    def attention_map(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        r"""Attention coefficients :math:`\alpha` at :math:`x`'s size, shape :math:`(B, 1, H, W)`."""
        self._check(x, g)
        s = self.sub_sample_factor
        h, w = x.shape[-2:]
        hc, wc = (h + s - 1) // s, (w + s - 1) // s  # the coarse grid, ceil(H / s) x ceil(W / s)
        x_pad = F.pad(x, (0, wc * s - w, 0, hc * s - h))  # bottom / right zero-padding to a multiple of s
        theta_x = self.theta(x_pad)  # [B, F_int, ceil(H / s), ceil(W / s)]
        phi_g = F.interpolate(self.phi(g), size=theta_x.shape[-2:], mode="bilinear", align_corners=False)
        q = self.psi(F.relu(theta_x + phi_g))  # [B, 1, ceil(H / s), ceil(W / s)]
        return F.interpolate(self.gate(q), size=(h, w), mode="bilinear", align_corners=False)  # [B, 1, H, W]

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.W(x * self.attention_map(x, g))
