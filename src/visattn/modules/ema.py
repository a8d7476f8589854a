"""Expectation-Maximization attention.

Li, Zhong, Wu, Yang, Lin, Liu. "Expectation-Maximization Attention Networks for Semantic Segmentation",
ICCV 2019. https://arxiv.org/abs/1907.13426 -- official code: https://github.com/XiaLiPKU/EMANet
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..layers import LayerType, Softmax32, check_input, create_norm
from ..ops.precision import compute_dtype
from ..registry import register

__all__ = ["EMAttention"]

_EPS = 1e-6  # the official code's epsilon in the M step and in the L2 normalisation


def _l2norm(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t / (_EPS + t.norm(dim=dim, keepdim=True))


@register(
    "ema",
    title="Expectation-Maximization Attention Unit (EMAU)",
    paper="Expectation-Maximization Attention Networks for Semantic Segmentation",
    authors="Li et al.",
    venue="ICCV",
    year=2019,
    arxiv="1907.13426",
    code="https://github.com/XiaLiPKU/EMANet",
    family="ema",
    domain="context",
    weights="matmul",
    applied="matrix product",
    role="context",
    placement="after_last_stage",
    complexity="O(HW)",
    note=(
        "Follows the official EMAU (XiaLiPKU/EMANet, network.py): conv1x1 (with bias) in, K = 64 bases initialised "
        "N(0, sqrt(2/K)) and L2-normalised over channels, T = 3 EM steps (E: Z = softmax over K of X^T mu, kernel "
        "exp(a^T b) with lambda = 1; M: mu = X Z / (1e-6 + sum_n Z), L2-normalised), reconstruction mu Z^T, ReLU, "
        "conv1x1 + BN, residual with the input, ReLU; convs initialised N(0, sqrt(2/(k*k*out))) as official. The "
        "moving average mu0 <- 0.9 mu0 + 0.1 mean_batch(mu_T) (paper eq. 15; official EM_MOM = 0.9) runs inside "
        "forward in training mode (official: in train.py's train_batch, on the mu gathered by DataParallel from all "
        "GPUs; here per process, not reduced across DDP ranks). Departure: the official code runs the EM iterations "
        "under torch.no_grad(), and only mu and Z reach the output, so conv1 gets no gradient; by default visattn "
        "back-propagates through them as the paper's equations read, and stop_em_grad=True gives the official "
        "behaviour. BatchNorm momentum: every official BN, conv2's included, is norm_layer = "
        "partial(SynchronizedBatchNorm2d, momentum=settings.BN_MOM) (network.py) with BN_MOM = 3e-4 (settings.py), "
        "in PyTorch's convention (running = (1 - m) running + m batch, bn_lib/nn/modules/batchnorm.py); visattn "
        "keeps PyTorch's 0.1. norm_layer=functools.partial(nn.BatchNorm2d, momentum=3e-4) gives the official value."
    ),
)
class EMAttention(nn.Module):
    r"""Expectation-Maximization attention: attention over K bases estimated by EM, reconstruct, add.

    With :math:`X \in R^{N \times C}` the positions (:math:`N = HW`) of ``conv1(x)`` and bases
    :math:`\mu \in R^{K \times C}` starting from the maintained :math:`\mu^{(0)}`, for :math:`t = 1..T`:

    .. math::
        Z^{(t)} = \mathrm{softmax}_K\big(X \mu^{(t-1)\top}\big),\quad
        \mu_k^{(t)} = \frac{\sum_n z_{nk}^{(t)} x_n}{\sum_n z_{nk}^{(t)}},\quad
        \mu_k^{(t)} \leftarrow \mu_k^{(t)} / \lVert \mu_k^{(t)} \rVert

    then :math:`\tilde X = Z^{(T)} \mu^{(T)}`, and the unit returns
    :math:`\mathrm{ReLU}(x + \mathrm{BN}(\mathrm{conv2}(\mathrm{ReLU}(\tilde X))))`. In training mode the
    bases are maintained by a moving average,
    :math:`\mu^{(0)} \leftarrow m\,\mu^{(0)} + (1 - m)\,\overline{\mu^{(T)}}` (mean over the batch).

    Args:
        channels: input channels :math:`C`.
        bases: :math:`K`, the number of bases (64).
        iterations: :math:`T`, EM steps (3).
        momentum: :math:`m` of the moving average of the bases (0.9, official ``EM_MOM``).
        stop_em_grad: run the EM steps without gradient as the official code does (then ``conv1`` gets no
            gradient); default False, back-propagate through them.
        norm_layer: the norm after ``conv2`` (``"batch"``).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    The ``attend`` submodule is the E step's softmax (called ``iterations`` times per forward, the last
    call gives the responsibilities used in the reconstruction); :meth:`attention_map` returns those,
    shape :math:`(B, K, H, W)`.

    Example:
        >>> ema = EMAttention(32)
        >>> x = torch.randn(2, 32, 9, 11)
        >>> ema(x).shape
        torch.Size([2, 32, 9, 11])
        >>> ema.attention_map(x).shape  # K = 64 bases
        torch.Size([2, 64, 9, 11])
    """

    mu: torch.Tensor

    def __init__(self, channels: int, *, bases: int = 64, iterations: int = 3, momentum: float = 0.9,
                 stop_em_grad: bool = False, norm_layer: LayerType = "batch"):
        super().__init__()
        if bases < 1:
            raise ValueError(f"EMAttention: bases must be >= 1, got {bases!r}")
        if iterations < 1:
            raise ValueError(f"EMAttention: iterations must be >= 1, got {iterations!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMAttention: momentum must be in [0, 1], got {momentum!r}")
        self.channels = channels
        self.bases = bases
        self.iterations = iterations
        self.momentum = float(momentum)
        self.stop_em_grad = stop_em_grad
        mu = torch.randn(1, channels, bases) * math.sqrt(2.0 / bases)  # Kaiming-normal, as official
        self.register_buffer("mu", _l2norm(mu, dim=1))  # [1, C, K]
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), create_norm(norm_layer, channels))
        self.attend = Softmax32(-1)
        for m in self.modules():  # official init: N(0, sqrt(2 / (k * k * out))) for convs, BN at (1, 0)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))

    def _em(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EM on ``conv1`` features ``x`` ``(B, C, H, W)``: bases ``(B, C, K)``, responsibilities ``(B, N, K)``.

        Computed in float32 (float64 for float64 inputs), autocast off.
        """
        b, c = x.shape[:2]
        cdt = compute_dtype(x)
        grad_ctx = torch.no_grad() if self.stop_em_grad else contextlib.nullcontext()
        with torch.autocast(x.device.type, enabled=False), grad_ctx:
            feats = x.to(cdt).flatten(2)  # [B, C, N]
            mu = self.mu.to(cdt, copy=True).expand(b, c, self.bases)  # [B, C, K]; a copy: mu0 is updated in place
            z = feats.new_empty(0)
            for _ in range(self.iterations):
                z = self.attend(torch.bmm(feats.transpose(1, 2), mu))  # E step: [B, N, K]
                z_ = z / (_EPS + z.sum(dim=1, keepdim=True))  # responsibilities normalised over positions
                mu = _l2norm(torch.bmm(feats, z_), dim=1)  # M step: [B, C, K]
        return mu, z

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Responsibilities of the last E step, :math:`(B, K, H, W)` (they sum to 1 over K)."""
        check_input(self, x, self.channels)
        b, _, h, w = x.shape
        _, z = self._em(self.conv1(x))
        return z.transpose(1, 2).reshape(b, self.bases, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.channels)
        feats = self.conv1(x)
        mu, z = self._em(feats)
        with torch.autocast(x.device.type, enabled=False):
            rec = torch.bmm(mu, z.transpose(1, 2))  # [B, C, N]
        rec = torch.relu(rec.to(feats.dtype).view_as(feats))
        out = torch.relu(x + self.conv2(rec))
        if self.training:
            with torch.no_grad():
                self.mu.mul_(self.momentum).add_(mu.detach().mean(dim=0, keepdim=True).to(self.mu.dtype),
                                                 alpha=1.0 - self.momentum)
        return out
