"""Squeeze-and-Excitation.

Hu, Shen, Albanie, Sun, Wu. "Squeeze-and-Excitation Networks", CVPR 2018.
https://arxiv.org/abs/1709.01507 -- official code: https://github.com/hujie-frank/SENet
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act, init_gate_bias, reduced_channels
from ..registry import register

__all__ = ["SqueezeExcite"]

_SQUEEZES = ("avg", "max", "avgmax")


@register(
    "se",
    title="Squeeze-and-Excitation",
    paper="Squeeze-and-Excitation Networks",
    authors="Hu et al.",
    venue="CVPR",
    year=2018,
    arxiv="1709.01507",
    code="https://github.com/hujie-frank/SENet",
    family="squeeze-excite",
    domain="channel",
    weights="pool+mlp",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the paper: FC layers with biases, r = 16, bottleneck width floor(C / r) with no rounding "
        "(timm rounds to multiples of 8 by default). The squeeze (avg / max / avg+max) and gate (sigmoid / "
        "tanh / relu) variants are those of the paper's ablations (Tables 11, 12); avgmax sums the two pooled "
        "vectors before the shared MLP."
    ),
)
class SqueezeExcite(nn.Module):
    r"""Squeeze-and-Excitation block: re-weight channels by a gate computed from global context.

    .. math::
        z = F_{sq}(x),\quad s = \sigma(W_2\,\delta(W_1 z)),\quad y_c = s_c\, x_c

    where :math:`F_{sq}` is global average pooling (eq. 2), :math:`\delta` is ``act_layer`` (ReLU)
    and :math:`\sigma` is ``gate_layer`` (sigmoid) (eq. 3), :math:`W_1 \in R^{C/r \times C}`,
    :math:`W_2 \in R^{C \times C/r}`.

    Args:
        channels: input channels :math:`C`.
        reduction: reduction ratio :math:`r` (paper default 16); the bottleneck has ``floor(C / r)``
            channels, at least 1.
        rd_channels: explicit bottleneck width, overriding ``reduction``.
        squeeze: ``"avg"`` (paper), ``"max"`` or ``"avgmax"`` (avg + max pooled vectors summed).
        act_layer: :math:`\delta`, a name or class (``"relu"``).
        gate_layer: :math:`\sigma`, ``"sigmoid"`` (paper), ``"tanh"``, ``"relu"`` or ``"hard_sigmoid"``.
        bias: biases in the two FC layers (the paper's and official code's FCs have them).
        gate_init: start the gate near this value (in (0, 1)) by setting :math:`W_2`'s bias to its logit;
            ``None`` (default, the paper's init) starts it near 1/2, which halves the block's branch.
            Not in the paper: an option against the slow start of gated blocks trained from scratch.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The gate's output, the channel weights :math:`s` of shape :math:`(B, C, 1, 1)`, is the ``gate``
    submodule's output and is returned by :meth:`attention_map`.

    Example:
        >>> se = SqueezeExcite(256)
        >>> sum(p.numel() for p in se.parameters())
        8464
        >>> se(torch.randn(2, 256, 7, 9)).shape
        torch.Size([2, 256, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 16, rd_channels: int | None = None,
                 squeeze: str = "avg", act_layer: LayerType = "relu", gate_layer: LayerType = "sigmoid",
                 bias: bool = True, gate_init: float | None = None):
        super().__init__()
        if squeeze not in _SQUEEZES:
            raise ValueError(f"SqueezeExcite: squeeze must be one of {_SQUEEZES}, got {squeeze!r}")
        self.channels = channels
        self.squeeze = squeeze
        rd = reduced_channels(channels, reduction, rd_channels)
        # 1x1 convs on (B, C, 1, 1) are the FC layers W1, W2 and keep channels_last inputs as they are.
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=bias)
        self.act = create_act(act_layer)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=bias)
        self.gate = create_act(gate_layer)
        if gate_init is not None:
            init_gate_bias(self, self.fc2.bias, self.gate, gate_init)

    def _squeeze(self, x: torch.Tensor) -> torch.Tensor:
        if self.squeeze == "avg":
            return x.mean((2, 3), keepdim=True)  # [B, C, 1, 1]
        if self.squeeze == "max":
            return x.amax((2, 3), keepdim=True)
        return x.mean((2, 3), keepdim=True) + x.amax((2, 3), keepdim=True)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights :math:`s`, shape :math:`(B, C, 1, 1)`."""
        check_input(self, x, self.channels)
        return self.gate(self.fc2(self.act(self.fc1(self._squeeze(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
