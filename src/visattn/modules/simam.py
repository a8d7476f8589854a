"""SimAM: a parameter-free attention module.

Yang, Zhang, Li, Xie. "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
ICML 2021. https://proceedings.mlr.press/v139/yang21o.html -- official code: https://github.com/ZjjConan/SimAM
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import check_input
from ..registry import register

__all__ = ["SimAM"]


@register(
    "simam",
    title="SimAM",
    paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    authors="Yang et al.",
    venue="ICML",
    year=2021,
    arxiv=None,
    code="https://github.com/ZjjConan/SimAM",
    family="simam",
    domain="channel+spatial",
    weights="statistics",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    parameter_free=True,
    note=(
        "visattn follows the paper's PyTorch listing and the official code, which agree: y = x * sigmoid("
        "(x - mu)^2 / (4 (sum((x - mu)^2) / n + lambda)) + 0.5), n = HW - 1, lambda = 1e-4 (the paper's eq. 4 "
        "writes the variance with 1/M, M = HW; the code divides by HW - 1). visattn departs only where both "
        "divide by zero: for a 1x1 feature map (n = 0) n is clamped to 1, which gives the limit x - mu = 0 and "
        "y = x * sigmoid(0.5) instead of NaN. Statistics of fp16 / bf16 inputs are computed in float32."
    ),
)
class SimAM(nn.Module):
    r"""SimAM: weight every neuron by its inverse minimal energy, with no learnable parameters.

    Per channel, with :math:`\mu` and :math:`\hat\sigma^2 = \frac{1}{n}\sum_i (x_i - \mu)^2` over the
    :math:`H W` positions and :math:`n = H W - 1`, the minimal energy of neuron :math:`t` is (eq. 4)

    .. math::
        e_t^* = \frac{4(\hat\sigma^2 + \lambda)}{(t - \mu)^2 + 2\hat\sigma^2 + 2\lambda},

    and the module applies (eq. 5, in the form of the paper's listing)

    .. math::
        y = x \cdot \sigma\!\left(\frac{1}{E}\right),\qquad
        \frac{1}{E} = \frac{(x - \mu)^2}{4(\hat\sigma^2 + \lambda)} + \frac{1}{2}.

    For a 1x1 feature map :math:`n = 0`; visattn clamps :math:`n` to 1 (then :math:`x - \mu = 0` and
    :math:`y = x\,\sigma(1/2)`), where the paper's formula would give NaN.

    Args:
        channels: input channels :math:`C` (only checked; the module has no parameters).
        e_lambda: :math:`\lambda`, the energy's regulariser (paper default 1e-4), > 0 so that a constant
            channel does not divide by zero.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The ``gate`` submodule (sigmoid) outputs the weights :math:`\sigma(1/E)` of shape :math:`(B, C, H, W)`,
    also returned by :meth:`attention_map`.

    Example:
        >>> simam = SimAM(64)
        >>> sum(p.numel() for p in simam.parameters())
        0
        >>> simam(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
        >>> x = torch.randn(1, 64, 1, 1)  # n = HW - 1 = 0 is clamped to 1: finite output
        >>> torch.allclose(simam(x), x * torch.sigmoid(torch.tensor(0.5)))
        True
    """

    def __init__(self, channels: int, *, e_lambda: float = 1e-4):
        super().__init__()
        if not e_lambda > 0:
            raise ValueError(f"SimAM: e_lambda must be > 0, got {e_lambda!r}")
        self.channels = channels
        self.e_lambda = float(e_lambda)
        self.gate = nn.Sigmoid()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The weights :math:`\sigma(1/E)`, shape :math:`(B, C, H, W)`."""
        check_input(self, x, self.channels)
        h, w = x.shape[-2:]
        n = torch.sym_max(h * w - 1, 1)  # HW - 1, clamped for 1x1 maps; stays symbolic under export
        xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        d = (xs - xs.mean((2, 3), keepdim=True)).square()  # [B, C, H, W]
        var = d.sum((2, 3), keepdim=True) / n  # [B, C, 1, 1]
        inv_energy = d / (4 * (var + self.e_lambda)) + 0.5
        return self.gate(inv_energy).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
