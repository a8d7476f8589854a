"""Relation-aware global attention, spatial (RGA-S) and channel (RGA-C).

Zhang, Lan, Zeng, Jin, Chen. "Relation-Aware Global Attention for Person Re-identification", CVPR 2020.
https://arxiv.org/abs/1904.02998 -- official code: https://github.com/microsoft/Relation-Aware-Global-Attention-Networks
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import ConvNormAct, LayerType, check_input, create_act, create_norm, format_shape
from ..registry import register

__all__ = ["RelationAwareSpatialAttention", "RelationAwareChannelAttention"]

_NOTE_COMMON = (
    "Follows the official RGA_Module (microsoft/Relation-Aware-Global-Attention-Networks, "
    "reid/models/models_utils/rga_modules.py): theta, phi, the original-feature embedding and the "
    "relation embedding are conv1x1 (no bias) + BN + ReLU; the node's relations [R(i,:); R(:,i)] are embedded and "
    "concatenated with the channel-mean of its embedded feature; W is conv1x1 + BN + ReLU + conv1x1 to 1 + BN, "
    "then sigmoid and x * attention. Ratios cha_ratio = spa_ratio = down_ratio = 8 as official. The official "
    "module runs spatial then channel attention in one class (use_spatial / use_channel); visattn registers "
    "them as two modules (chain rga_s then rga_c for RGA-SC). Official widths are floored: C // 8 (RGA-S's "
    "theta, phi, feature embedding; RGA-C's relation embedding), HW // 8 (RGA-S's relation embedding; RGA-C's "
    "theta, phi, feature embedding) and (1 + HW // 8) // 8 (RGA-S) or (1 + C // 8) // 8 (RGA-C) for W's first "
    "conv. A zero width builds a 0-channel conv that fails in forward, so the official RGA-S needs C >= 8 and "
    "HW >= 56, RGA-C HW >= 8 and C >= 56 (e.g. RGA-S fails at 7 x 7). visattn floors the same widths but keeps "
    "each >= 1, so it runs at every size."
)


def _check_feature_size(module: nn.Module, feature_size) -> tuple[int, int]:
    name = type(module).__name__
    try:
        fh, fw = (int(s) for s in feature_size)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: feature_size must be (H, W), got {feature_size!r}") from None
    if fh < 1 or fw < 1:
        raise ValueError(f"{name}: feature_size must be positive, got {feature_size!r}")
    return fh, fw


def _check_size(module: nn.Module, x: torch.Tensor) -> None:
    check_input(module, x, module.channels)
    if tuple(x.shape[-2:]) != module.feature_size:
        fh, fw = module.feature_size
        raise ValueError(
            f"{type(module).__name__}: built for feature_size=({fh}, {fw}) (its relation features have H*W = "
            f"{fh * fw} entries), expected input of shape (B, {module.channels}, {fh}, {fw}), got {format_shape(x)}"
        )


def _mlp(in_channels: int, down_ratio: int, norm_layer: LayerType) -> nn.Sequential:
    """The official W: conv1x1 + BN + ReLU + conv1x1 to one channel + BN (no biases)."""
    hidden = max(1, in_channels // down_ratio)
    return nn.Sequential(
        ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, act_layer="relu", bias=False),
        nn.Conv2d(hidden, 1, 1, bias=False),
        create_norm(norm_layer, 1),
    )


def _embed(in_channels: int, out_channels: int, norm_layer: LayerType) -> ConvNormAct:
    return ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer="relu", bias=False)


_META = dict(
    paper="Relation-Aware Global Attention for Person Re-identification",
    authors="Zhang et al.",
    venue="CVPR",
    year=2020,
    arxiv="1904.02998",
    code="https://github.com/microsoft/Relation-Aware-Global-Attention-Networks",
    family="rga",
    weights="matmul",
    applied="scale",
    role="context",
    placement="every_stage_end",
    complexity="O((HW)^2)",
    size_bound=True,
)


@register("rga_s", title="Relation-aware Global Attention, spatial (RGA-S)", domain="spatial",
          note=_NOTE_COMMON + " RGA-S: the HW x HW relation matrix, hence O((HW)^2) time and memory.", **_META)
class RelationAwareSpatialAttention(nn.Module):
    r"""RGA-S: spatial attention from each position's pairwise relations with all positions.

    With the positions as nodes (:math:`N = HW`, features :math:`x_i \in R^C`):

    .. math::
        r_{i,j} = \theta(x_i)^\top \phi(x_j),\quad
        y_i = \big[\,\mathrm{pool}_c(\psi_s(x_i));\ \varphi_s([r_{i,:};\ r_{:,i}])\,\big],\quad
        a_i = \sigma(W_2\,\mathrm{ReLU}(W_1 y_i)),\quad \hat x_i = a_i x_i

    where :math:`\theta, \phi, \psi_s` are conv1x1 + BN + ReLU to :math:`C / c_r` channels, :math:`\varphi_s`
    conv1x1 + BN + ReLU from the :math:`2N` relations to :math:`N / s_r`, :math:`\mathrm{pool}_c` the mean over
    channels, and :math:`W_1, W_2` (with BN) reduce :math:`1 + N / s_r` by :math:`d_r` then to one value.
    The relation width ties the module to one feature size.

    Args:
        channels: input channels :math:`C`.
        feature_size: ``(H, W)`` of the inputs the module will see (:math:`N = HW`).
        cha_ratio: :math:`c_r`, channel reduction of the embeddings (8).
        spa_ratio: :math:`s_r`, reduction of the :math:`N`-long relation vectors (8).
        down_ratio: :math:`d_r`, reduction inside :math:`W` (8).
        norm_layer: the norm of every conv (``"batch"``).
        gate_layer: :math:`\sigma` (``"sigmoid"``).

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`(H, W)` = ``feature_size``
        - Output: :math:`(B, C, H, W)`

    The ``gate`` submodule's output, and :meth:`attention_map`'s, are the weights :math:`(B, 1, H, W)`.

    Example:
        >>> rga = RelationAwareSpatialAttention(64, feature_size=(16, 8))
        >>> x = torch.randn(2, 64, 16, 8)
        >>> rga(x).shape
        torch.Size([2, 64, 16, 8])
        >>> rga.attention_map(x).shape
        torch.Size([2, 1, 16, 8])
    """

    def __init__(self, channels: int, *, feature_size: tuple[int, int], cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8, norm_layer: LayerType = "batch", gate_layer: LayerType = "sigmoid"):
        super().__init__()
        self.channels = channels
        self.feature_size = _check_feature_size(self, feature_size)
        n = self.feature_size[0] * self.feature_size[1]
        inter_c = max(1, channels // cha_ratio)
        inter_s = max(1, n // spa_ratio)
        self.theta = _embed(channels, inter_c, norm_layer)
        self.phi = _embed(channels, inter_c, norm_layer)
        self.gx = _embed(channels, inter_c, norm_layer)
        self.gg = _embed(2 * n, inter_s, norm_layer)
        self.W = _mlp(1 + inter_s, down_ratio, norm_layer)
        self.gate = create_act(gate_layer)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial weights :math:`(B, 1, H, W)`."""
        _check_size(self, x)
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [B, C', N]
        phi = self.phi(x).flatten(2)  # [B, C', N]
        rel = torch.bmm(theta.transpose(1, 2), phi)  # [B, N, N]: rel[i, j] = theta_i . phi_j
        # At node i, channel j: first rel[i, j] (its relations to others), then rel[j, i] (others' to it).
        joint = torch.cat((rel.transpose(1, 2), rel), dim=1).view(b, 2 * h * w, h, w)  # [B, 2N, H, W]
        own = self.gx(x).mean(dim=1, keepdim=True)  # [B, 1, H, W]
        return self.gate(self.W(torch.cat((own, self.gg(joint)), dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)


@register("rga_c", title="Relation-aware Global Attention, channel (RGA-C)", domain="channel",
          note=_NOTE_COMMON + (" RGA-C: channels are the nodes and their H*W values the node features, so the "
                               "relation matrix is C x C, but the embeddings are conv1x1 from HW to HW/8 channels: "
                               "parameters and time grow as (HW)^2, hence O((HW)^2)."), **_META)
class RelationAwareChannelAttention(nn.Module):
    r"""RGA-C: channel attention from each channel's pairwise relations with all channels.

    With the channels as nodes (:math:`C` of them, features :math:`x_c \in R^{N}`, :math:`N = HW`):

    .. math::
        r_{c,d} = \theta(x_c)^\top \phi(x_d),\quad
        y_c = \big[\,\mathrm{pool}(\psi_c(x_c));\ \varphi_c([r_{c,:};\ r_{:,c}])\,\big],\quad
        a_c = \sigma(W_2\,\mathrm{ReLU}(W_1 y_c)),\quad \hat x_c = a_c x_c

    where :math:`\theta, \phi, \psi_c` are conv1x1 + BN + ReLU over the :math:`N` spatial values to
    :math:`N / s_r`, :math:`\varphi_c` conv1x1 + BN + ReLU from the :math:`2C` relations to :math:`C / c_r`,
    :math:`\mathrm{pool}` the mean of :math:`\psi_c(x_c)`, and :math:`W_1, W_2` (with BN) reduce
    :math:`1 + C / c_r` by :math:`d_r` then to one value. The node features tie the module to one feature size.

    Args:
        channels: input channels :math:`C`.
        feature_size: ``(H, W)`` of the inputs the module will see (:math:`N = HW`).
        cha_ratio: :math:`c_r`, reduction of the :math:`C`-long relation vectors (8).
        spa_ratio: :math:`s_r`, reduction of the :math:`N`-long node features (8).
        down_ratio: :math:`d_r`, reduction inside :math:`W` (8).
        norm_layer: the norm of every conv (``"batch"``).
        gate_layer: :math:`\sigma` (``"sigmoid"``).

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`(H, W)` = ``feature_size``
        - Output: :math:`(B, C, H, W)`

    The ``gate`` submodule's output, and :meth:`attention_map`'s, are the weights :math:`(B, C, 1, 1)`.

    Example:
        >>> rga = RelationAwareChannelAttention(64, feature_size=(16, 8))
        >>> x = torch.randn(2, 64, 16, 8)
        >>> rga(x).shape
        torch.Size([2, 64, 16, 8])
        >>> rga.attention_map(x).shape
        torch.Size([2, 64, 1, 1])
    """

    def __init__(self, channels: int, *, feature_size: tuple[int, int], cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8, norm_layer: LayerType = "batch", gate_layer: LayerType = "sigmoid"):
        super().__init__()
        self.channels = channels
        self.feature_size = _check_feature_size(self, feature_size)
        n = self.feature_size[0] * self.feature_size[1]
        inter_c = max(1, channels // cha_ratio)
        inter_s = max(1, n // spa_ratio)
        self.theta = _embed(n, inter_s, norm_layer)
        self.phi = _embed(n, inter_s, norm_layer)
        self.gx = _embed(n, inter_s, norm_layer)
        self.gg = _embed(2 * channels, inter_c, norm_layer)
        self.W = _mlp(1 + inter_c, down_ratio, norm_layer)
        self.gate = create_act(gate_layer)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights :math:`(B, C, 1, 1)`."""
        _check_size(self, x)
        b, c = x.shape[:2]
        xc = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # [B, N, C, 1]: channels are the nodes
        theta = self.theta(xc).squeeze(-1)  # [B, N', C]
        phi = self.phi(xc).squeeze(-1)  # [B, N', C]
        rel = torch.bmm(theta.transpose(1, 2), phi)  # [B, C, C]: rel[c, d] = theta_c . phi_d
        joint = torch.cat((rel.transpose(1, 2), rel), dim=1).unsqueeze(-1)  # [B, 2C, C, 1]
        own = self.gx(xc).mean(dim=1, keepdim=True)  # [B, 1, C, 1]
        logits = self.W(torch.cat((own, self.gg(joint)), dim=1))  # [B, 1, C, 1]
        return self.gate(logits.view(b, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x)
