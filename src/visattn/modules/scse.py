"""Concurrent spatial and channel squeeze & excitation.

Roy, Navab, Wachinger. "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks",
MICCAI 2018. https://arxiv.org/abs/1803.02579 (journal version: "Recalibrating Fully Convolutional Networks with
Spatial and Channel 'Squeeze & Excitation' Blocks", IEEE TMI 2019, https://arxiv.org/abs/1808.08127)
-- official code: https://github.com/ai-med/squeeze_and_excitation
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act, reduced_channels
from ..registry import register

__all__ = ["SCSE"]

_FUSIONS = ("max", "add", "mul")


class _ChannelSE(nn.Module):
    """cSE: sigmoid(W2 relu(W1 GAP(x))), as the official ChannelSELayer (Linear layers with biases)."""

    def __init__(self, channels: int, rd: int, act_layer: LayerType):
        super().__init__()
        self.fc1 = nn.Linear(channels, rd)
        self.act = create_act(act_layer)
        self.fc2 = nn.Linear(rd, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3)))))).view(b, c, 1, 1)  # [B, C, 1, 1]


class _SpatialSE(nn.Module):
    """sSE: sigmoid(conv1x1 C -> 1), as the official SpatialSELayer (conv with bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))  # [B, 1, H, W]


@register(
    "scse",
    title="concurrent spatial & channel SE",
    paper="Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks",
    authors="Roy et al.",
    venue="MICCAI",
    year=2018,
    arxiv="1803.02579",
    code="https://github.com/ai-med/squeeze_and_excitation",
    family="scse",
    domain="channel+spatial",
    weights="pool+mlp",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the official ChannelSpatialSELayer: cSE with reduction r = 2 (as the MICCAI paper's C/2 "
        "bottleneck) and Linear biases, sSE a 1x1 conv with bias, fused by element-wise max of the two "
        "recalibrated maps. The MICCAI paper adds them (fusion='add'); the journal version (TMI 2019, "
        "1808.08127) compares max-out, addition and multiplication (fusion='mul', the product of the two "
        "recalibrated maps) and keeps max-out, as the official code. Its concatenation variant (which doubles "
        "the channels) is not offered."
    ),
)
class SCSE(nn.Module):
    r"""scSE: channel SE and spatial SE recalibrations of the same input, computed in parallel and fused.

    .. math::
        \hat U_{cSE} = U \otimes \sigma(W_2\,\delta(W_1\,\mathrm{GAP}(U))),\qquad
        \hat U_{sSE} = U \otimes \sigma(W_{sq} \star U),\qquad
        \hat U_{scSE} = f(\hat U_{cSE}, \hat U_{sSE})

    with :math:`W_1 \in R^{C/r \times C}`, :math:`W_2 \in R^{C \times C/r}` (with biases), :math:`W_{sq}` a
    1x1 conv to one channel, and :math:`f` the element-wise maximum (``"max"``), sum (``"add"``) or product
    (``"mul"``, so that :math:`U` enters squared) of the two recalibrated maps.

    Args:
        channels: input channels :math:`C`.
        reduction: cSE reduction ratio :math:`r` (paper and official code: 2); ``floor(C / r)``, at least 1.
        rd_channels: explicit cSE bottleneck width, overriding ``reduction``.
        fusion: :math:`f`: ``"max"`` (official code, TMI paper), ``"add"`` (MICCAI paper) or ``"mul"``.
        act_layer: :math:`\delta` (``"relu"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The channel weights :math:`(B, C, 1, 1)` and the spatial weights :math:`(B, 1, H, W)` are the outputs of
    the ``cse.gate`` and ``sse.gate`` submodules, and are returned as a pair by :meth:`attention_map`.

    Example:
        >>> scse = SCSE(64)
        >>> sum(p.numel() for p in scse.parameters())  # cSE 64*32+32 + 32*64+64, sSE 64+1
        4257
        >>> scse(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 2, rd_channels: int | None = None, fusion: str = "max",
                 act_layer: LayerType = "relu"):
        super().__init__()
        if fusion not in _FUSIONS:
            raise ValueError(f"SCSE: fusion must be one of {_FUSIONS}, got {fusion!r}")
        self.channels = channels
        self.fusion = fusion
        self.cse = _ChannelSE(channels, reduced_channels(channels, reduction, rd_channels), act_layer)
        self.sse = _SpatialSE(channels)

    def attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel and spatial weights, shapes :math:`(B, C, 1, 1)` and :math:`(B, 1, H, W)`."""
        check_input(self, x, self.channels)
        return self.cse(x), self.sse(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s_c, s_s = self.attention_map(x)
        u_c, u_s = x * s_c, x * s_s  # the cSE and sSE recalibrations
        if self.fusion == "max":
            return torch.maximum(u_c, u_s)
        if self.fusion == "add":
            return u_c + u_s
        return u_c * u_s
