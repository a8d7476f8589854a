"""Non-local block.

Wang, Girshick, Gupta, He. "Non-local Neural Networks", CVPR 2018.
https://arxiv.org/abs/1711.07971 -- official code: https://github.com/facebookresearch/video-nonlocal-net
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import LayerType, check_input, create_norm
from ..ops.attention import softmax_attention
from ..ops.pooling import CeilMaxPool2d
from ..ops.precision import compute_dtype
from ..registry import register

__all__ = ["NonLocalBlock"]

_MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
_SOFTMAX_MODES = ("embedded_gaussian", "gaussian")


class _PairwiseNormalize(nn.Module):
    """``f(x_i, x_j) / C(x)``: softmax over j for the Gaussian forms, division by the number of j otherwise."""

    def __init__(self, softmax: bool):
        super().__init__()
        self.softmax = softmax

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.softmax:
            return torch.softmax(f, dim=-1)
        return f / f.shape[-1]


@register(
    "nonlocal",
    title="Non-local block",
    paper="Non-local Neural Networks",
    authors="Wang et al.",
    venue="CVPR",
    year=2018,
    arxiv="1711.07971",
    code="https://github.com/facebookresearch/video-nonlocal-net",
    family="non-local",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="every_other_block",
    complexity="O((HW)^2)",
    note=(
        "Follows the paper: the four pairwise functions (embedded Gaussian by default), inter channels C/2, dot "
        "product and concatenation normalised by N (the positions of phi), z = BN(W_z y) + x with BN's scale and "
        "shift zero at init so the block starts as the identity (official NONLOCAL.BN_INIT_GAMMA = 0). The official "
        "Caffe2 code (facebookresearch/video-nonlocal-net, lib/models/nonlocal_helper.py, spacetime_nonlocal; "
        "defaults in lib/core/config.py) multiplies the embedded-Gaussian energies by (C/2)^-1/2 (USE_SCALE): off "
        "here as in the paper's eq. 3, `scaled=True` turns it on. With USE_MAXPOOL (default True) it max-pools the "
        "block's input blob (model.MaxPool(cur, ...), 2x2 / 2, no padding, so floor sizes) and applies the phi and g "
        "convs to the pooled blob; visattn's `sub_sample` does the same (pool, then conv). "
        "AlexHex7/Non-local_pytorch (lib/non_local_embedded_gaussian.py) pools after the convs (phi = "
        "Sequential(conv, max_pool)); the results differ, as max-pooling does not commute with a 1x1 conv. Here the "
        "sub-sampling is optional (off by default: the paper's eq. 1) and pools with ceil_mode so odd and 1-pixel "
        "sizes work. Computed without the N x N map (SDPA / re-association) unless mode='concatenation' or "
        "memory_efficient=False."
    ),
)
class NonLocalBlock(nn.Module):
    r"""Non-local block: each position is the normalised sum of all positions' features, weighted by affinity.

    .. math::
        y_i = \frac{1}{\mathcal{C}(x)} \sum_{\forall j} f(x_i, x_j)\, g(x_j), \qquad z_i = W_z y_i + x_i

    with :math:`g(x_j) = W_g x_j`, :math:`\theta(x_i) = W_\theta x_i`, :math:`\phi(x_j) = W_\phi x_j` (1x1
    convs to ``inter_channels``) and the pairwise function ``mode``:

    - ``"embedded_gaussian"``: :math:`f = e^{\theta(x_i)^T \phi(x_j)}`, :math:`\mathcal{C} = \sum_j f`
      (a softmax over j; eq. 3);
    - ``"gaussian"``: :math:`f = e^{x_i^T x_j}`, :math:`\mathcal{C} = \sum_j f` (eq. 2; no
      :math:`\theta, \phi`);
    - ``"dot_product"``: :math:`f = \theta(x_i)^T \phi(x_j)`, :math:`\mathcal{C} = N` (eq. 4);
    - ``"concatenation"``: :math:`f = \mathrm{ReLU}(w_f^T [\theta(x_i), \phi(x_j)])`, :math:`\mathcal{C} = N`
      (eq. 5).

    :math:`N` is the number of positions j (of :math:`\phi`, after sub-sampling). :math:`W_z` is a 1x1
    conv followed by BN whose scale and shift start at zero, so the block is the identity at
    initialisation (paper Sec. 4.1).

    Args:
        channels: input channels :math:`C`.
        mode: the pairwise function :math:`f` (see above).
        inter_channels: width of :math:`\theta, \phi, g` (paper: :math:`C/2`).
        sub_sample: max-pool (2x2, stride 2) the input of :math:`\phi` and :math:`g` (the paper's
            sub-sampling trick, Sec. 3.3); pools with ``ceil_mode`` so any size works.
        scaled: multiply the energies of the two Gaussian forms by :math:`d^{-1/2}` (:math:`d` the width of the
            compared vectors), as the official code does (``USE_SCALE``); the paper has no scale.
        norm_layer: the norm after :math:`W_z` (``"batch"``, as the paper). With ``None``, :math:`W_z`'s
            weight and bias start at zero instead.
        memory_efficient: compute :math:`y` without the :math:`N \times N` map (fused SDPA for the embedded
            Gaussian, the blocked kernel of :mod:`visattn.ops.attention` for the Gaussian form, and
            :math:`\theta (\phi^T g) / N` for the dot product). ``False`` writes the map out (reference path).
            The concatenation form always writes it out.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The normalised pairwise weights :math:`f / \mathcal{C}`, shape :math:`(B, HW, N)`, are the output of the
    ``attend`` submodule (called by :meth:`attention_map` and by the reference path).

    Example:
        >>> nl = NonLocalBlock(64)
        >>> x = torch.randn(2, 64, 10, 12)
        >>> torch.equal(nl(x), x)  # identity at initialisation
        True
        >>> NonLocalBlock(64, mode="dot_product", sub_sample=True).attention_map(x).shape
        torch.Size([2, 120, 30])
    """

    #: What each map of ``attention_map`` is over, for ``visattn.viz``: attention between positions.
    attention_map_axes = ("positions",)

    def __init__(self, channels: int, *, mode: str = "embedded_gaussian", inter_channels: int | None = None,
                 sub_sample: bool = False, scaled: bool = False, norm_layer: LayerType = "batch",
                 memory_efficient: bool = True):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"NonLocalBlock: mode must be one of {_MODES}, got {mode!r}")
        inter = max(1, channels // 2) if inter_channels is None else int(inter_channels)
        if inter < 1:
            raise ValueError(f"NonLocalBlock: inter_channels must be >= 1, got {inter_channels!r}")
        self.channels, self.inter_channels, self.mode = channels, inter, mode
        self.scaled, self.memory_efficient = scaled, memory_efficient
        self.pool = CeilMaxPool2d(2) if sub_sample else nn.Identity()
        # Eager mode takes any size; a dynamic-shape torch.export of the sub-sampled block needs H, W >= 3
        # (it specialises a pooled size of 1). Not enforced.
        self.min_size = 3 if sub_sample else 1
        self.g = nn.Conv2d(channels, inter, 1)
        if mode == "gaussian":  # f compares the inputs themselves
            self.theta, self.phi = nn.Identity(), nn.Identity()
        else:
            self.theta = nn.Conv2d(channels, inter, 1)
            self.phi = nn.Conv2d(channels, inter, 1)
        # w_f of eq. 5: a weight vector on [theta_i, phi_j] (no bias).
        self.concat_project = nn.Linear(2 * inter, 1, bias=False) if mode == "concatenation" else None
        self.attend = _PairwiseNormalize(softmax=mode in _SOFTMAX_MODES)
        self.w_z = nn.Conv2d(inter, channels, 1)
        self.norm = create_norm(norm_layer, channels)
        if isinstance(self.norm, nn.Identity):
            nn.init.zeros_(self.w_z.weight)
            nn.init.zeros_(self.w_z.bias)
        else:
            nn.init.zeros_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xp = self.pool(x)
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, HW, Ci] (C for gaussian)
        phi = self.phi(xp).flatten(2).transpose(1, 2)  # [B, N, Ci]
        g = self.g(xp).flatten(2).transpose(1, 2)  # [B, N, Ci]
        return theta, phi, g

    def _energy_scale(self, theta: torch.Tensor) -> float:
        return theta.shape[-1] ** -0.5 if self.scaled else 1.0

    def _weights(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``f / C(x)``, shape ``(B, HW, N)``; energies in float32 (float64 for float64 inputs)."""
        cdt = compute_dtype(theta)
        with torch.autocast(theta.device.type, enabled=False):
            theta, phi = theta.to(cdt), phi.to(cdt)
            if self.mode == "concatenation":
                w = self.concat_project.weight.to(cdt)  # [1, 2Ci]
                wt, wp = w[:, :self.inter_channels], w[:, self.inter_channels:]
                # w_f^T [theta_i, phi_j] = w_theta . theta_i + w_phi . phi_j
                f = torch.relu(torch.matmul(theta, wt.t()) + torch.matmul(phi, wp.t()).transpose(1, 2))  # [B, HW, N]
            else:
                f = torch.matmul(theta, phi.transpose(1, 2))  # [B, HW, N]
                if self.mode in _SOFTMAX_MODES and self.scaled:
                    f = f * self._energy_scale(theta)
            return self.attend(f)

    def _aggregate(self, theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``y = f / C(x) @ g``, shape ``(B, HW, Ci)``."""
        if self.memory_efficient and self.mode in _SOFTMAX_MODES:
            return softmax_attention(theta, phi, g, scale=self._energy_scale(theta))
        if self.memory_efficient and self.mode == "dot_product":
            return torch.matmul(theta, torch.matmul(phi.transpose(1, 2), g)) / phi.shape[1]  # theta (phi^T g) / N
        return torch.matmul(self._weights(theta, phi).to(g.dtype), g)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""Normalised pairwise weights :math:`f(x_i, x_j) / \mathcal{C}(x)`, shape :math:`(B, HW, N)`."""
        check_input(self, x, self.channels)
        theta, phi, _ = self._embed(x)
        return self._weights(theta, phi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        y = self._aggregate(*self._embed(x))  # [B, HW, Ci]
        y = y.transpose(1, 2).reshape(b, self.inter_channels, h, w)  # [B, Ci, H, W]
        return self.norm(self.w_z(y)) + x
