"""Spatial Group-wise Enhance.

Li, Hu, Yang. "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
arXiv 2019. https://arxiv.org/abs/1905.09646 -- official code: https://github.com/implus/PytorchInsight
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act
from ..registry import register

__all__ = ["SpatialGroupEnhance"]


@register(
    "sge",
    title="Spatial Group-wise Enhance",
    paper="Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
    authors="Li et al.",
    venue="arXiv",
    year=2019,
    arxiv="1905.09646",
    code="https://github.com/implus/PytorchInsight",
    family="sge",
    domain="spatial",
    weights="statistics",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the official code (resnet_sge.py), which agrees with the paper: G = 64 groups, c_i = g . x_i "
        "with g the group's average-pooled vector, normalised over space with the unbiased std (t.std) plus "
        "eps = 1e-5 added to the std, per-group scale / shift initialised to 0 / 1, sigmoid. Where the official "
        "code gives NaN (one position, H * W = 1: unbiased std of one value; and NaN gradients for a constant "
        "map), visattn divides by max(HW - 1, 1) and takes a std of 0 with a zero gradient, so the normalised "
        "value is 0 and the gate is sigmoid(bias); the result is otherwise the same."
    ),
)
class SpatialGroupEnhance(nn.Module):
    r"""Spatial group-wise enhance: each channel group is gated by its positions' similarity to the group mean.

    The C channels are split into G groups; for group :math:`g` with vectors :math:`x_i \in R^{C/G}` at the
    positions :math:`i = 1..m` (:math:`m = HW`):

    .. math::
        \bar g = \frac{1}{m}\sum_i x_i,\quad c_i = \bar g \cdot x_i,\quad
        \hat c_i = \frac{c_i - \mu_c}{\sigma_c + \epsilon},\quad a_i = \gamma \hat c_i + \beta,\quad
        \hat x_i = x_i\, \mathrm{sigmoid}(a_i)

    with :math:`\mu_c`, :math:`\sigma_c` the mean and (unbiased, as the official ``t.std``) standard deviation
    of :math:`c` over the :math:`m` positions, and :math:`\gamma, \beta` one pair per group, initialised to 0
    and 1 (official code), so that the module starts as :math:`x \cdot \mathrm{sigmoid}(1)`.

    Args:
        channels: input channels :math:`C`, divisible by ``groups``.
        groups: :math:`G` (paper and official code: 64).
        eps: :math:`\epsilon` added to the std (official: 1e-5).
        gate_layer: the gate, a name or class (``"sigmoid"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The per-group spatial weights :math:`\mathrm{sigmoid}(a)`, shape :math:`(B, G, H, W)`, are the ``gate``
    submodule's output and are returned by :meth:`attention_map`. With a single position (:math:`H = W = 1`)
    the std is undefined; visattn takes :math:`\hat c = 0` (the official code returns NaN there).

    Example:
        >>> sge = SpatialGroupEnhance(256)
        >>> sum(p.numel() for p in sge.parameters())  # 64 scales + 64 shifts
        128
        >>> sge(torch.randn(2, 256, 7, 9)).shape
        torch.Size([2, 256, 7, 9])
    """

    def __init__(self, channels: int, *, groups: int = 64, eps: float = 1e-5, gate_layer: LayerType = "sigmoid"):
        super().__init__()
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"SpatialGroupEnhance: groups must be a positive int, got {groups!r}")
        if channels % groups:
            raise ValueError(f"SpatialGroupEnhance: channels ({channels}) must be divisible by groups ({groups})")
        self.channels = channels
        self.groups = groups
        self.eps = eps
        # Shapes and names as the official code, so its state dicts load.
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.gate = create_act(gate_layer)

    def _groups(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w)  # [B, G, C/G, H, W]

    def _attention(self, xg: torch.Tensor) -> torch.Tensor:
        b, g, _, h, w = xg.shape
        mean_vec = xg.mean((3, 4), keepdim=True)  # [B, G, C/G, 1, 1]: the group's average-pooled vector
        t = (xg * mean_vec).sum(2).reshape(b, g, h * w)  # [B, G, HW]: c_i = g . x_i
        t = t - t.mean(-1, keepdim=True)
        var = t.square().sum(-1, keepdim=True) / torch.sym_max(h * w - 1, 1)  # unbiased; 0 (not NaN) for HW = 1
        # sqrt with a finite gradient where var == 0 (constant map): std = 0 there, as t = 0 anyway.
        positive = var > 0
        std = torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), torch.zeros_like(var))
        t = (t / (std + self.eps)).reshape(b, g, h, w)  # [B, G, H, W]
        return self.gate(t * self.weight + self.bias)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The per-group spatial weights, shape :math:`(B, G, H, W)`."""
        check_input(self, x, self.channels)
        return self._attention(self._groups(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        xg = self._groups(x)
        return (xg * self._attention(xg).unsqueeze(2)).reshape(x.shape)
