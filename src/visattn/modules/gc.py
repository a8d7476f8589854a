"""Global Context block.

Cao, Xu, Lin, Wei, Hu. "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCV Workshops
2019. https://arxiv.org/abs/1904.11492 -- official code: https://github.com/xvjiarui/GCNet
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, Softmax32, check_input, create_act, reduced_channels
from ..registry import register

__all__ = ["GlobalContext"]

_POOLS = ("att", "avg")
_FUSIONS = ("add", "mul", "mul+add")


def _transform(channels: int, planes: int, act_layer: LayerType) -> nn.Sequential:
    # Indices as the official channel_add_conv / channel_mul_conv (0: conv, 1: LayerNorm, 2: act, 3: conv).
    return nn.Sequential(
        nn.Conv2d(channels, planes, 1),
        nn.LayerNorm([planes, 1, 1]),
        create_act(act_layer),
        nn.Conv2d(planes, channels, 1),
    )


@register(
    "gc",
    title="Global Context block",
    paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
    authors="Cao et al.",
    venue="ICCVW",
    year=2019,
    arxiv="1904.11492",
    code="https://github.com/xvjiarui/GCNet",
    family="gc",
    domain="channel",
    weights="pool+mlp",
    applied="add",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the official ContextBlock: attention pooling (conv 1x1 to one channel, softmax over HW), "
        "transform conv1x1 C -> C/r, LayerNorm([C/r, 1, 1]), ReLU, conv1x1 C/r -> C with its last conv "
        "zero-initialised (last_zero_init) and the mask conv Kaiming(fan_in); r = 16; fusion add (default, the "
        "paper's choice), mul (sigmoid scale) or both (mul then add, as the official code applies them). One "
        "departure: the mask conv has no bias, because the softmax over HW cancels it (it has zero gradient); "
        "drop 'conv_mask.bias' from official or timm state dicts. The paper's r = 16 floor(C / 16); timm rounds "
        "rd_channels and uses LayerNorm2d with eps 1e-6 (official nn.LayerNorm: 1e-5)."
    ),
)
class GlobalContext(nn.Module):
    r"""Global context block: a query-independent attention pooling, a bottleneck transform, and a broadcast fusion.

    .. math::
        \alpha_j = \frac{e^{W_k x_j}}{\sum_m e^{W_k x_m}},\quad c = \sum_j \alpha_j x_j,\quad
        \delta(c) = W_{v2}\,\mathrm{ReLU}(\mathrm{LN}(W_{v1} c)),\quad z_i = x_i + \delta(c)

    (eq. 3 of the paper; ``fusion="add"``). With ``fusion="mul"`` the output is
    :math:`z_i = x_i \odot \mathrm{sigmoid}(\delta(c))`, and with ``"mul+add"`` both, each with its own transform:
    :math:`z_i = x_i \odot \mathrm{sigmoid}(\delta_{mul}(c)) + \delta_{add}(c)`.

    Args:
        channels: input channels :math:`C`.
        reduction: bottleneck ratio :math:`r` (paper default 16); the bottleneck has ``floor(C / r)``
            channels, at least 1.
        rd_channels: explicit bottleneck width, overriding ``reduction``.
        pool: ``"att"`` (the paper's softmax attention pooling, :math:`W_k` is ``conv_mask``) or ``"avg"``
            (global average pooling, the paper's ablation).
        fusion: ``"add"`` (paper default), ``"mul"`` or ``"mul+add"``.
        act_layer: the activation inside the transform (``"relu"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The pooling weights :math:`\alpha`, shape :math:`(B, 1, HW)`, are the output of the ``attend`` submodule
    (softmax) and, as :math:`(B, 1, H, W)`, of :meth:`attention_map`; with ``fusion`` ``"mul"`` the
    sigmoid ``gate`` submodule gives the channel scale :math:`(B, C, 1, 1)`. The last conv of each transform
    starts at zero, so the ``"add"`` block starts as the identity.

    Example:
        >>> gc = GlobalContext(256)
        >>> sum(p.numel() for p in gc.parameters())  # mask 256 + 256*16+16 + LN 2*16 + 16*256+256
        8752
        >>> gc(torch.randn(2, 256, 7, 9)).shape
        torch.Size([2, 256, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 16, rd_channels: int | None = None, pool: str = "att",
                 fusion: str = "add", act_layer: LayerType = "relu"):
        super().__init__()
        if pool not in _POOLS:
            raise ValueError(f"GlobalContext: pool must be one of {_POOLS}, got {pool!r}")
        if fusion not in _FUSIONS:
            raise ValueError(f"GlobalContext: fusion must be one of {_FUSIONS}, got {fusion!r}")
        self.channels = channels
        self.pool = pool
        self.fusion = fusion
        planes = reduced_channels(channels, reduction, rd_channels)
        if pool == "att":
            self.conv_mask = nn.Conv2d(channels, 1, 1, bias=False)  # W_k; a bias would cancel in the softmax
            self.attend = Softmax32(-1)
        self.channel_mul_conv = _transform(channels, planes, act_layer) if "mul" in fusion else None
        self.gate = nn.Sigmoid() if "mul" in fusion else None
        self.channel_add_conv = _transform(channels, planes, act_layer) if "add" in fusion else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: Kaiming-normal (fan_in, ReLU) mask conv, zero last transform convs."""
        if self.pool == "att":
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        for transform in (self.channel_mul_conv, self.channel_add_conv):
            if transform is not None:
                nn.init.zeros_(transform[-1].weight)
                nn.init.zeros_(transform[-1].bias)

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = self.conv_mask(x).reshape(b, 1, h * w)  # [B, 1, HW]
        return self.attend(logits)  # softmax energies in float32 for fp16 / bf16

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The pooling weights :math:`\alpha`, shape :math:`(B, 1, H, W)` (uniform for ``pool="avg"``)."""
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        if self.pool == "avg":
            return torch.full((b, 1, h, w), 1.0 / (h * w), dtype=x.dtype, device=x.device)
        return self._weights(x).reshape(b, 1, h, w)

    def _context(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.pool == "avg":
            return x.mean((2, 3), keepdim=True)  # [B, C, 1, 1]
        alpha = self._weights(x)  # [B, 1, HW]
        context = torch.matmul(x.reshape(b, c, h * w), alpha.transpose(1, 2).to(x.dtype))  # [B, C, 1]
        return context.reshape(b, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        context = self._context(x)  # [B, C, 1, 1]
        out = x
        if self.channel_mul_conv is not None:
            out = out * self.gate(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
