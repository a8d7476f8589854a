"""Convolutional Block Attention Module.

Woo, Park, Lee, Kweon. "CBAM: Convolutional Block Attention Module", ECCV 2018.
https://arxiv.org/abs/1807.06521 -- official code: https://github.com/Jongchan/attention-module
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..layers import LayerType, check_gate_init, check_input, create_act, init_gate_bias, reduced_channels
from ..registry import register

__all__ = ["ChannelGate", "SpatialGate", "CBAM"]

_POOLS = ("avg", "max")


def _check_pool_types(cls_name: str, pool_types) -> tuple[str, ...]:
    pool_types = (pool_types,) if isinstance(pool_types, str) else tuple(pool_types)
    if not pool_types or any(p not in _POOLS for p in pool_types) or len(set(pool_types)) != len(pool_types):
        raise ValueError(f"{cls_name}: pool_types must be distinct entries of {_POOLS}, got {pool_types!r}")
    return pool_types


class ChannelGate(nn.Module):
    r"""CBAM's channel attention: one shared MLP on the average- and max-pooled descriptors, summed, sigmoid.

    .. math::
        M_c(F) = \sigma(\mathrm{MLP}(\mathrm{AvgPool}(F)) + \mathrm{MLP}(\mathrm{MaxPool}(F))),\quad
        F' = M_c(F) \otimes F

    with :math:`\mathrm{MLP}(z) = W_1\,\mathrm{ReLU}(W_0 z + b_0) + b_1`, :math:`W_0 \in R^{C/r \times C}`,
    :math:`W_1 \in R^{C \times C/r}` (paper eq. 2; the official ``nn.Linear`` layers have biases).

    Args:
        channels: input channels :math:`C`.
        reduction: reduction ratio :math:`r` (paper default 16); the hidden layer has ``floor(C / r)`` units,
            at least 1.
        rd_channels: explicit hidden width, overriding ``reduction``.
        pool_types: the pooled descriptors fed to the shared MLP and summed: ``("avg", "max")`` (paper),
            ``("avg",)`` or ``("max",)`` (the paper's ablation, Table 1).
        act_layer: the MLP's hidden activation (``"relu"``).
        bias: biases in the MLP (official: yes).
        gate_init: start the gate near this value (in (0, 1)) by setting :math:`b_1` (summed once per pooled
            descriptor) to its share of the logit; ``None`` (default) starts it near 1/2.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The channel weights :math:`M_c`, shape :math:`(B, C, 1, 1)`, are the ``gate`` submodule's output and are
    returned by :meth:`attention_map`.

    Example:
        >>> cg = ChannelGate(64)
        >>> sum(p.numel() for p in cg.parameters())  # 64*4+4 + 4*64+64
        580
        >>> cg(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 16, rd_channels: int | None = None,
                 pool_types: tuple[str, ...] = ("avg", "max"), act_layer: LayerType = "relu", bias: bool = True,
                 gate_init: float | None = None):
        super().__init__()
        self.channels = channels
        self.pool_types = _check_pool_types(type(self).__name__, pool_types)
        rd = reduced_channels(channels, reduction, rd_channels)
        # Indices as the official ChannelGate.mlp (0: Flatten, 1: Linear, 2: ReLU, 3: Linear).
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, rd, bias=bias), create_act(act_layer),
                                 nn.Linear(rd, channels, bias=bias))
        self.gate = nn.Sigmoid()
        if gate_init is not None:  # the shared MLP's bias is summed once per pooled descriptor
            init_gate_bias(self, self.mlp[3].bias, self.gate, gate_init, terms=len(self.pool_types))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights :math:`M_c`, shape :math:`(B, C, 1, 1)`."""
        check_input(self, x, self.channels)
        b, c = x.shape[:2]
        pooled = [x.mean((2, 3)) if p == "avg" else x.amax((2, 3)) for p in self.pool_types]  # each [B, C]
        logits = self.mlp(torch.cat(pooled, 0)).view(len(pooled), b, c).sum(0)  # shared MLP, summed: [B, C]
        return self.gate(logits).view(b, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


class SpatialGate(nn.Module):
    r"""CBAM's spatial attention: a k x k conv + BN over the channel-wise max and mean, sigmoid.

    .. math::
        M_s(F) = \sigma(\mathrm{BN}(f^{k \times k}([\mathrm{MaxPool}_c(F); \mathrm{AvgPool}_c(F)]))),\quad
        F'' = M_s(F) \otimes F

    (paper eq. 3; the BN, without a following ReLU, is the official ``BasicConv(relu=False)``; the pooled maps
    are stacked max first, as the official ``ChannelPool``).

    Args:
        channels: input channels :math:`C` (only checked; the gate's size does not depend on it).
        kernel_size: :math:`k`, odd (paper default 7; 3 in the ablation), padding :math:`(k - 1) / 2`.
        zero_init: start the BN's scale at 0, as the official ResNet initialisation does for every
            ``SpatialGate`` BN, so the gate starts at a constant 1/2.
        gate_init: start the gate at this value (in (0, 1)) instead, through the BN's shift.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The spatial weights :math:`M_s`, shape :math:`(B, 1, H, W)`, are the ``gate`` submodule's output and are
    returned by :meth:`attention_map`.

    Example:
        >>> sg = SpatialGate(64)
        >>> sum(p.numel() for p in sg.parameters())  # 2*7*7 conv + BN scale and shift
        100
        >>> sg(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, kernel_size: int = 7, zero_init: bool = True,
                 gate_init: float | None = None):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialGate: kernel_size must be a positive odd int, got {kernel_size!r}")
        self.channels = channels
        # Named and set as the official BasicConv (conv without bias, BN momentum 0.01) so its state dicts load.
        self.spatial = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False),
            bn=nn.BatchNorm2d(1, eps=1e-5, momentum=0.01),
        ))
        if zero_init:
            nn.init.zeros_(self.spatial.bn.weight)
        self.gate = nn.Sigmoid()
        if gate_init is not None:
            init_gate_bias(self, self.spatial.bn.bias, self.gate, gate_init)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial weights :math:`M_s`, shape :math:`(B, 1, H, W)`."""
        check_input(self, x, self.channels)
        pooled = torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), dim=1)  # [B, 2, H, W]: [max; mean]
        return self.gate(self.spatial(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


@register(
    "cbam",
    title="Convolutional Block Attention Module",
    paper="CBAM: Convolutional Block Attention Module",
    authors="Woo et al.",
    venue="ECCV",
    year=2018,
    arxiv="1807.06521",
    code="https://github.com/Jongchan/attention-module",
    family="cbam",
    domain="channel+spatial",
    weights="pool+mlp",
    applied="scale",
    role="plugin",
    placement="every_block",
    complexity="O(HW)",
    note=(
        "Paper and official code agree on the structure: channel gate sigmoid(MLP(avg) + MLP(max)) with one "
        "shared MLP (r = 16), then spatial gate sigmoid(BN(conv7x7([max; mean]))), sequential, no residual. "
        "visattn follows the official code where the paper is silent: MLP biases, conv without bias, BN "
        "momentum 0.01, max stacked before mean, and the official ResNet's zero init of the spatial BN scale "
        "(zero_init=True). The official channel pooling also offers lp / lse, not in the paper; visattn offers "
        "avg and max. timm's CbamModule has no MLP biases by default, stacks [mean; max] and uses BN momentum 0.1."
    ),
)
class CBAM(nn.Module):
    r"""CBAM: channel attention, then spatial attention on the channel-refined features.

    .. math::
        F' = M_c(F) \otimes F,\qquad F'' = M_s(F') \otimes F'

    (paper eq. 1) with :math:`M_c` of :class:`ChannelGate` and :math:`M_s` of :class:`SpatialGate`. There is no
    residual inside the module (in the paper's ResBlock the residual is the block's own).

    Args:
        channels: input channels :math:`C`.
        reduction: the channel MLP's reduction ratio :math:`r` (paper default 16).
        rd_channels: explicit hidden width of the channel MLP, overriding ``reduction``.
        pool_types: the channel gate's pooled descriptors, ``("avg", "max")`` (paper).
        kernel_size: the spatial conv's :math:`k` (paper default 7).
        no_spatial: channel attention only (official option; the paper's "channel only" ablation).
        act_layer: the channel MLP's hidden activation (``"relu"``).
        zero_init: start the spatial BN's scale at 0 (official ResNet initialisation).
        gate_init: start the product :math:`M_c M_s` near this value (in (0, 1)): each gate's last bias is set so
            that it starts near :math:`\sqrt{p}` (:math:`p` with ``no_spatial``). ``None`` (default, the official
            init) starts the product near 1/4. Not in the paper: an option against the slow start of gated
            blocks trained from scratch.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The submodules ``channel_gate`` and ``spatial_gate`` each have a ``gate`` (sigmoid) whose output is
    :math:`M_c` resp. :math:`M_s`; :meth:`attention_map` returns the pair.

    Example:
        >>> cbam = CBAM(64)
        >>> sum(p.numel() for p in cbam.parameters())  # channel MLP 580 + spatial conv + BN 100
        680
        >>> cbam(torch.randn(2, 64, 7, 9)).shape
        torch.Size([2, 64, 7, 9])
    """

    def __init__(self, channels: int, *, reduction: float = 16, rd_channels: int | None = None,
                 pool_types: tuple[str, ...] = ("avg", "max"), kernel_size: int = 7, no_spatial: bool = False,
                 act_layer: LayerType = "relu", zero_init: bool = True, gate_init: float | None = None):
        super().__init__()
        self.channels = channels
        each = None  # each of the two gates starts at sqrt(gate_init), so that their product starts at gate_init
        if gate_init is not None:
            each = check_gate_init(self, gate_init) ** (1.0 if no_spatial else 0.5)
        self.channel_gate = ChannelGate(channels, reduction=reduction, rd_channels=rd_channels,
                                        pool_types=pool_types, act_layer=act_layer, gate_init=each)
        self.spatial_gate = None if no_spatial else SpatialGate(channels, kernel_size=kernel_size,
                                                                zero_init=zero_init, gate_init=each)

    def attention_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""The weights :math:`(M_c, M_s)`, shapes :math:`(B, C, 1, 1)` and :math:`(B, 1, H, W)`.

        :math:`M_s` is computed on :math:`F' = M_c \otimes F`, so that the output is ``x * m_c * m_s``;
        it is ``None`` with ``no_spatial``.
        """
        check_input(self, x, self.channels)
        m_c = self.channel_gate.attention_map(x)
        m_s = None if self.spatial_gate is None else self.spatial_gate.attention_map(x * m_c)
        return m_c, m_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        x = self.channel_gate(x)
        return x if self.spatial_gate is None else self.spatial_gate(x)
