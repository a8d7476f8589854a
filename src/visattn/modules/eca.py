"""Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo, Hu. "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
CVPR 2020. https://arxiv.org/abs/1910.03151 -- official code: https://github.com/BangguWu/ECANet
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers import LayerType, check_input, create_act
from ..registry import register

__all__ = ["EfficientChannelAttention", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    r"""The adaptive kernel size of ECA (paper eq. 12): :math:`k = |\log_2(C) / \gamma + b / \gamma|_{odd}`.

    Computed as the official formula :math:`t = \lfloor |(\log_2 C + b) / \gamma| \rfloor`, :math:`k = t` if
    t is odd else :math:`t + 1`. There is no lower clamp (timm clamps to 3), so C < 8 gives k = 1.

    Example:
        >>> [eca_kernel_size(c) for c in (64, 128, 256, 512, 1024, 2048)]
        [3, 5, 5, 5, 5, 7]
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register(
    "eca",
    title="Efficient Channel Attention",
    paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    authors="Wang et al.",
    venue="CVPR",
    year=2020,
    arxiv="1910.03151",
    code="https://github.com/BangguWu/ECANet",
    family="eca",
    domain="channel",
    weights="conv",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Follows the paper: k from the adaptive rule t = int(|(log2(C) + b) / gamma|), k = t if odd else t + 1, "
        "gamma = 2, b = 1 (C = 256 gives k = 5), 1-D conv without bias, sigmoid. The official eca_layer takes "
        "k_size explicitly (default 3, and its ResNet builders pass 3 unless told otherwise); pass kernel_size to "
        "fix k. timm's EcaModule computes the same k but clamps it to >= 3 (differs only for C < 8)."
    ),
)
class EfficientChannelAttention(nn.Module):
    r"""Efficient channel attention: a 1-D convolution across the pooled channel descriptor, no reduction.

    .. math::
        y = \mathrm{GAP}(x) \in R^{C},\quad \omega = \sigma(\mathrm{C1D}_k(y)),\quad \tilde x_c = \omega_c\, x_c

    where :math:`\mathrm{C1D}_k` is a 1-D convolution with kernel size :math:`k` (zero padding
    :math:`(k-1)/2`, no bias) shared by all channels (eq. 11), and
    :math:`k = \psi(C) = |\log_2(C)/\gamma + b/\gamma|_{odd}` (eq. 12). The module has :math:`k` parameters.

    Args:
        channels: input channels :math:`C`.
        kernel_size: a fixed odd :math:`k`; ``None`` (default) derives it from :math:`C` with
            :func:`eca_kernel_size`.
        gamma: :math:`\gamma` of the adaptive rule (paper: 2).
        b: :math:`b` of the adaptive rule (paper: 1).
        gate_layer: :math:`\sigma`, a name or class (``"sigmoid"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The channel weights :math:`\omega`, shape :math:`(B, C, 1, 1)`, are the ``gate`` submodule's output and
    are returned by :meth:`attention_map`.

    Example:
        >>> eca = EfficientChannelAttention(256)
        >>> eca.kernel_size, sum(p.numel() for p in eca.parameters())
        (5, 5)
        >>> eca(torch.randn(2, 256, 7, 9)).shape
        torch.Size([2, 256, 7, 9])
    """

    def __init__(self, channels: int, *, kernel_size: int | None = None, gamma: float = 2.0, b: float = 1.0,
                 gate_layer: LayerType = "sigmoid"):
        super().__init__()
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, b)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"EfficientChannelAttention: kernel_size must be a positive odd int, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        # Named `conv` as the official eca_layer and timm's EcaModule, so their state dicts load.
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = create_act(gate_layer)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""Channel weights :math:`\omega`, shape :math:`(B, C, 1, 1)`."""
        check_input(self, x, self.channels)
        b, c = x.shape[:2]
        y = x.mean((2, 3)).view(b, 1, c)  # [B, 1, C]: channels are the 1-D conv's length axis
        return self.gate(self.conv(y)).view(b, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
