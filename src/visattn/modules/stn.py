"""Spatial Transformer.

Jaderberg, Simonyan, Zisserman, Kavukcuoglu. "Spatial Transformer Networks", NeurIPS 2015.
https://arxiv.org/abs/1506.02025 -- no official code; PyTorch's affine_grid / grid_sample implement the
paper's grid generator and bilinear sampler.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LayerType, check_input, create_act
from ..registry import register

__all__ = ["SpatialTransformer"]

_PADDING = ("zeros", "border", "reflection")
_MODES = ("bilinear", "nearest")


def _affine_grid(theta: torch.Tensor, h, w) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, h, w), align_corners=False)``, written so that h, w stay symbolic.

    (``F.affine_grid`` specialises the sizes under ``torch.export``.) The output pixel centres in normalised
    coordinates are ``(2 j + 1) / w - 1`` and ``(2 i + 1) / h - 1``; each is mapped through ``theta``.
    """
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1  # [W]
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1  # [H]
    t = theta[:, :, :, None, None]  # [B, 2, 3, 1, 1]
    grid = t[:, :, 0] * xs[None, None, None, :] + t[:, :, 1] * ys[None, None, :, None] + t[:, :, 2]  # [B, 2, H, W]
    return grid.permute(0, 2, 3, 1)  # [B, H, W, 2]: (x, y) per output position


@register(
    "stn",
    title="Spatial Transformer (affine)",
    paper="Spatial Transformer Networks",
    authors="Jaderberg et al.",
    venue="NeurIPS",
    year=2015,
    arxiv="1506.02025",
    code=None,
    family="spatial-transformer",
    domain="spatial",
    weights="sampling",
    applied="warp",
    role="transform",
    complexity="O(HW)",
    note=(
        "No official code. The paper's affine transformer: a localisation net regresses theta (2 x 3), the "
        "grid generator maps the output's normalised coordinates through theta (eq. 1) and the bilinear sampler "
        "(eq. 5) reads the input there, zeros outside. The paper's localisation nets are task-specific; visattn "
        "uses two conv3x3 + ReLU layers, an adaptive average pool to a fixed grid (so any input size works) and "
        "two FC layers, the last one initialised to the identity transform (zero weight, bias [1, 0, 0, 0, 1, 0]) "
        "as the paper's experiments do. Coordinates use align_corners=False (pixel centres), so the identity "
        "theta reproduces the input."
    ),
)
class SpatialTransformer(nn.Module):
    r"""Spatial transformer: warp the input by an affine transform predicted from the input itself.

    .. math::
        \theta = f_{loc}(U),\quad
        \begin{pmatrix} x^s_i \\ y^s_i \end{pmatrix} = \theta \begin{pmatrix} x^t_i \\ y^t_i \\ 1 \end{pmatrix},
        \quad V^c_i = \sum_{n}^{H}\sum_{m}^{W} U^c_{nm}\,\max(0, 1 - |x^s_i - m|)\,\max(0, 1 - |y^s_i - n|)

    (eqs. 1, 5) with :math:`(x^t_i, y^t_i)` the output's pixel centres in normalised coordinates
    :math:`[-1, 1]` and :math:`(x^s_i, y^s_i)` mapped back to pixel units for the sampling kernel; points
    outside the input read zeros. :math:`f_{loc}` is conv3x3 + act, conv3x3 + act, adaptive average pool to
    ``pool_size`` x ``pool_size``, FC + act, FC to 6 numbers; the last FC starts at the identity transform, so
    the module starts as the identity.

    Args:
        channels: input channels :math:`C`.
        loc_channels: channels of the localisation net's convs.
        loc_hidden: width of the localisation net's hidden FC layer.
        pool_size: the fixed grid the localisation features are pooled to.
        loc_pool: max-pool the localisation net's input by this factor before each of its convs (1: none), as
            the paper's localisation nets for large inputs do (60x60 cluttered MNIST: max-pool, conv, max-pool,
            conv), so that the localisation net stays cheap on large inputs.
        act_layer: activation of the localisation net (``"relu"``).
        mode: sampling kernel, ``"bilinear"`` (paper, eq. 5) or ``"nearest"`` (eq. 4).
        padding_mode: value outside the input, ``"zeros"`` (paper), ``"border"`` or ``"reflection"``.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`

    :meth:`attention_map` returns :math:`\theta`, shape :math:`(B, 2, 3)`.

    Example:
        >>> st = SpatialTransformer(64)
        >>> x = torch.randn(2, 64, 7, 9)
        >>> st.attention_map(x)[0]
        tensor([[1., 0., 0.],
                [0., 1., 0.]], grad_fn=<SelectBackward0>)
        >>> torch.allclose(st(x), x, atol=1e-6)
        True
    """

    def __init__(self, channels: int, *, loc_channels: int = 32, loc_hidden: int = 32, pool_size: int = 4,
                 act_layer: LayerType = "relu", mode: str = "bilinear", padding_mode: str = "zeros",
                 loc_pool: int = 1):
        super().__init__()
        name = type(self).__name__
        if mode not in _MODES:
            raise ValueError(f"{name}: mode must be one of {_MODES}, got {mode!r}")
        if padding_mode not in _PADDING:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING}, got {padding_mode!r}")
        if min(loc_channels, loc_hidden, pool_size, loc_pool) < 1:
            raise ValueError(f"{name}: loc_channels, loc_hidden, pool_size and loc_pool must be >= 1, "
                             f"got {loc_channels!r}, {loc_hidden!r}, {pool_size!r}, {loc_pool!r}")
        self.channels = channels
        self.mode = mode
        self.padding_mode = padding_mode

        def pool() -> list[nn.Module]:  # ceil_mode: a map smaller than the window still gives one value
            return [nn.MaxPool2d(loc_pool, ceil_mode=True)] if loc_pool > 1 else []

        self.localization = nn.Sequential(
            *pool(),
            nn.Conv2d(channels, loc_channels, 3, padding=1),
            create_act(act_layer),
            *pool(),
            nn.Conv2d(loc_channels, loc_channels, 3, padding=1),
            create_act(act_layer),
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),
            nn.Linear(loc_channels * pool_size * pool_size, loc_hidden),
            create_act(act_layer),
        )
        self.fc_loc = nn.Linear(loc_hidden, 6)
        nn.init.zeros_(self.fc_loc.weight)
        with torch.no_grad():
            self.fc_loc.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        self.gate = nn.Identity()  # the transform as its own step, so hooks can record theta

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The affine transform :math:`\theta`, shape :math:`(B, 2, 3)`."""
        check_input(self, x, self.channels)
        # One memory format for the localisation net: the warp amplifies theta's rounding differences by the
        # image size, so channels_last and contiguous inputs would otherwise warp visibly differently.
        return self.gate(self.fc_loc(self.localization(x.contiguous())).view(-1, 2, 3))  # [B, 2, 3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.attention_map(x).to(x.dtype)  # autocast may give a lower precision theta
        grid = _affine_grid(theta, x.shape[-2], x.shape[-1])  # [B, H, W, 2]
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=False)
