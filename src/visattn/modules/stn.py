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

__all__ = ["SpatialTransformer", "LOC_NETS"]

_PADDING = ("zeros", "border", "reflection")
_MODES = ("bilinear", "nearest")
#: Localisation nets: ``"conv"`` (any input size) and ``"paper"`` (the STN paper's net for 60x60 inputs).
LOC_NETS = ("conv", "paper")
#: Widths and pooling of each localisation net when not given: (loc_channels, loc_hidden, loc_pool).
_LOC_DEFAULTS = {"conv": (32, 32, 1), "paper": (20, 50, 2)}


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
    placement="input",
    complexity="O(HW)",
    note=(
        "No official code. The paper's affine transformer: a localisation net regresses theta (2 x 3), the "
        "grid generator maps the output's normalised coordinates through theta (eq. 1) and the bilinear sampler "
        "(eq. 5) reads the input there, zeros outside. The paper's localisation nets are task-specific; visattn "
        "uses two conv3x3 + ReLU layers, an adaptive average pool to a fixed grid (so any input size works) and "
        "two FC layers, the last one initialised to the identity transform (zero weight, bias [1, 0, 0, 0, 1, 0]) "
        "as the paper's experiments do; loc_net='paper' is the paper's net for 60x60 cluttered MNIST (max-pool, "
        "conv 5x5, max-pool, conv 5x5, FC, FC to 6; 20 filters and 50 hidden units as the Lasagne recipe that "
        "reproduces it), bound to one input size. output_size=(h, w) samples a smaller grid, the paper's "
        "downsampling ST. Coordinates use align_corners=False (pixel centres), so the identity theta "
        "reproduces the input (resized bilinearly to output_size)."
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
    outside the input read zeros. The output grid has the input's size, or ``output_size``: the paper's
    downsampling transformers (its 60x60 cluttered MNIST ST-CNN samples a 30x30 grid), which the network
    after it is then built for. The window the output shows is centred at :math:`(\theta_{13}, \theta_{23})`
    and spans :math:`|\det \theta_{:, :2}|` of the input's area.

    :math:`f_{loc}` ends in an FC layer to 6 numbers that starts at the identity transform, so the module
    starts as the identity (a bilinear resize when ``output_size`` is smaller). Before it:

    - ``loc_net="conv"`` (default; any input size): [max-pool ``loc_pool``] conv3x3 + act, [max-pool
      ``loc_pool``] conv3x3 + act, adaptive average pool to ``pool_size`` x ``pool_size``, FC + act.
    - ``loc_net="paper"``: the paper's localisation net for large inputs (60x60 cluttered MNIST, Appendix A):
      max-pool 2, conv5x5 + ReLU, max-pool 2, conv5x5 + ReLU (no padding), FC + ReLU, with 20 filters and 50
      hidden units as in the Lasagne recipe that reproduces the experiment. Its FC reads the whole last map,
      so it is built for one ``input_size``.

    Args:
        channels: input channels :math:`C`.
        loc_net: ``"conv"`` or ``"paper"`` (:data:`LOC_NETS`).
        loc_channels: channels of the localisation net's convs (``conv``: 32, ``paper``: 20).
        loc_hidden: width of the localisation net's hidden FC layer (``conv``: 32, ``paper``: 50).
        pool_size: the fixed grid the ``conv`` net's features are pooled to (4); the ``paper`` net has none.
        act_layer: activation of the localisation net (``"relu"``).
        mode: sampling kernel, ``"bilinear"`` (paper, eq. 5) or ``"nearest"`` (eq. 4).
        padding_mode: value outside the input, ``"zeros"`` (paper), ``"border"`` or ``"reflection"``.
        loc_pool: max-pool the localisation net's input by this factor before each of its convs (``conv``: 1,
            none; ``paper``: 2), as the paper's localisation nets for large inputs do, so that the localisation
            net stays cheap on large inputs.
        output_size: ``(h, w)`` (or one int for both) of the sampled grid; ``None``: the input's size.
        input_size: ``(H, W)`` (or one int) the ``paper`` net is built for; the ``conv`` net takes none.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, h, w)` with ``(h, w) = output_size``, or :math:`(B, C, H, W)`

    :meth:`attention_map` returns :math:`\theta`, shape :math:`(B, 2, 3)`.

    Raises:
        ValueError: an unknown ``loc_net`` / ``mode`` / ``padding_mode``; a width, pool or size that is not a
            positive whole number; ``pool_size`` with the ``paper`` net; the ``paper`` net without
            ``input_size`` or with one too small for its two convs; ``input_size`` with the ``conv`` net;
            an input of another size than the ``paper`` net was built for.

    Example:
        >>> st = SpatialTransformer(64)
        >>> x = torch.randn(2, 64, 7, 9)
        >>> st.attention_map(x)[0]
        tensor([[1., 0., 0.],
                [0., 1., 0.]], grad_fn=<SelectBackward0>)
        >>> torch.allclose(st(x), x, atol=1e-6)
        True
        >>> SpatialTransformer(1, loc_net="paper", input_size=60, output_size=30)(torch.randn(2, 1, 60, 60)).shape
        torch.Size([2, 1, 30, 30])
    """

    def __init__(self, channels: int, *, loc_channels: int | None = None, loc_hidden: int | None = None,
                 pool_size: int | None = None, act_layer: LayerType = "relu", mode: str = "bilinear",
                 padding_mode: str = "zeros", loc_pool: int | None = None, loc_net: str = "conv",
                 output_size: int | tuple[int, int] | None = None, input_size: int | tuple[int, int] | None = None):
        super().__init__()
        name = type(self).__name__
        if mode not in _MODES:
            raise ValueError(f"{name}: mode must be one of {_MODES}, got {mode!r}")
        if padding_mode not in _PADDING:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING}, got {padding_mode!r}")
        if loc_net not in LOC_NETS:
            raise ValueError(f"{name}: loc_net must be one of {LOC_NETS}, got {loc_net!r}")
        default_channels, default_hidden, default_pool = _LOC_DEFAULTS[loc_net]
        loc_channels = _whole(name, "loc_channels", default_channels if loc_channels is None else loc_channels)
        loc_hidden = _whole(name, "loc_hidden", default_hidden if loc_hidden is None else loc_hidden)
        loc_pool = _whole(name, "loc_pool", default_pool if loc_pool is None else loc_pool)
        self.channels, self.mode, self.padding_mode, self.loc_net = channels, mode, padding_mode, loc_net
        self.output_size = None if output_size is None else _size(name, "output_size", output_size)
        self.input_size = None if input_size is None else _size(name, "input_size", input_size)

        def pool() -> list[nn.Module]:  # ceil_mode: a map smaller than the window still gives one value
            return [nn.MaxPool2d(loc_pool, ceil_mode=True)] if loc_pool > 1 else []

        if loc_net == "conv":
            if self.input_size is not None:
                raise ValueError(f"{name}: loc_net='conv' works at any input size and takes no input_size")
            pool_size = _whole(name, "pool_size", 4 if pool_size is None else pool_size)
            layers = [*pool(), nn.Conv2d(channels, loc_channels, 3, padding=1), create_act(act_layer), *pool(),
                      nn.Conv2d(loc_channels, loc_channels, 3, padding=1), create_act(act_layer),
                      nn.AdaptiveAvgPool2d(pool_size)]
            flat = loc_channels * pool_size * pool_size
        else:
            if pool_size is not None:
                raise ValueError(f"{name}: loc_net='paper' has no pool_size (its FC reads the whole last map)")
            if self.input_size is None:
                raise ValueError(f"{name}: loc_net='paper' is built for one input size; pass input_size=(H, W)")
            fh, fw = (((n // loc_pool) - 4) // loc_pool - 4 for n in self.input_size)
            if min(fh, fw) < 1:
                raise ValueError(f"{name}: loc_net='paper' needs inputs of at least {(5 * loc_pool + 4) * loc_pool} "
                                 f"pixels a side for loc_pool={loc_pool} (two 5x5 convs after max-pools), "
                                 f"got input_size={self.input_size}")
            layers = [nn.MaxPool2d(loc_pool), nn.Conv2d(channels, loc_channels, 5), create_act(act_layer),
                      nn.MaxPool2d(loc_pool), nn.Conv2d(loc_channels, loc_channels, 5), create_act(act_layer)]
            flat = loc_channels * fh * fw
        self.localization = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, loc_hidden), create_act(act_layer))
        self.fc_loc = nn.Linear(loc_hidden, 6)
        nn.init.zeros_(self.fc_loc.weight)
        with torch.no_grad():
            self.fc_loc.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        self.gate = nn.Identity()  # the transform as its own step, so hooks can record theta

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        r"""The affine transform :math:`\theta`, shape :math:`(B, 2, 3)`."""
        check_input(self, x, self.channels)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"{type(self).__name__}: loc_net='paper' was built for {self.input_size[0]}x"
                             f"{self.input_size[1]} inputs, got {x.shape[-2]}x{x.shape[-1]}")
        # One memory format for the localisation net: the warp amplifies theta's rounding differences by the
        # image size, so channels_last and contiguous inputs would otherwise warp visibly differently.
        return self.gate(self.fc_loc(self.localization(x.contiguous())).view(-1, 2, 3))  # [B, 2, 3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.attention_map(x).to(x.dtype)  # autocast may give a lower precision theta
        h, w = self.output_size if self.output_size is not None else (x.shape[-2], x.shape[-1])
        grid = _affine_grid(theta, h, w)  # [B, h, w, 2]
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=False)


def _whole(module: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{module}: {name} must be a whole number >= 1, got {value!r}")
    return value


def _size(module: str, name: str, value) -> tuple[int, int]:
    try:
        pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{module}: {name} must be (h, w) or one int, got {value!r}")
    return _whole(module, name, pair[0]), _whole(module, name, pair[1])
