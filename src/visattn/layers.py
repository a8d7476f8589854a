"""Shared building blocks: activation / norm factories, width rounding, conv-norm-act, input checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "LayerType",
    "create_act",
    "create_norm",
    "make_divisible",
    "ConvNormAct",
    "LayerNorm2d",
    "check_input",
    "check_size",
    "format_shape",
    "reduced_channels",
    "CeilAvgPool2d",
    "Softmax32",
    "softmax32",
    "check_gate_init",
    "init_gate_bias",
]

LayerType = str | type[nn.Module] | Callable[..., nn.Module] | None

_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=False),
    "relu6": lambda: nn.ReLU6(),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hard_sigmoid": nn.Hardsigmoid,
    "hard_swish": nn.Hardswish,
    "h_swish": nn.Hardswish,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def create_act(act: LayerType) -> nn.Module:
    """Build an activation from a name (``"relu"``, ``"sigmoid"``, ``"hard_sigmoid"``, ...), a class, or None.

    Example:
        >>> create_act("sigmoid")
        Sigmoid()
    """
    if act is None:
        return nn.Identity()
    if isinstance(act, str):
        try:
            return _ACTS[act.lower()]()
        except KeyError:
            raise ValueError(f"visattn: unknown activation {act!r}; expected one of {sorted(_ACTS)}") from None
    if isinstance(act, nn.Module):
        return act
    return act()


def check_gate_init(owner: nn.Module, gate_init: float) -> float:
    """``gate_init`` as a float in (0, 1), or a ValueError naming ``owner``."""
    if not isinstance(gate_init, int | float) or isinstance(gate_init, bool) or not 0 < gate_init < 1:
        raise ValueError(f"{type(owner).__name__}: gate_init must be a number in (0, 1), got {gate_init!r}")
    return float(gate_init)


def init_gate_bias(owner: nn.Module, bias: torch.Tensor | None, gate: nn.Module, gate_init: float,
                   *, terms: int = 1, factors: int = 1) -> None:
    r"""Set the bias before a sigmoid gate so that the gate starts near ``gate_init``.

    With :math:`g = \prod_{f=1}^{F} \sigma(\sum_{t=1}^{T} (W_t z + b))`, the bias becomes
    :math:`b = \mathrm{logit}(p^{1/F}) / T`, so that the product of the ``factors`` gates starts at :math:`p` when
    the weighted part is small (it is at initialisation). ``terms`` counts how often the bias is summed into one
    logit (CBAM's shared MLP on avg and max), ``factors`` how many gates multiply (coordinate attention's
    :math:`g^h g^w`).

    Raises:
        ValueError: ``gate_init`` outside (0, 1), a gate that is not a sigmoid, or no bias to set.
    """
    name = type(owner).__name__
    p = check_gate_init(owner, gate_init) ** (1.0 / factors)
    if not isinstance(gate, nn.Sigmoid):
        raise ValueError(f"{name}: gate_init needs the sigmoid gate, got {type(gate).__name__}")
    if bias is None:
        raise ValueError(f"{name}: gate_init needs a bias before the gate (bias=True)")
    with torch.no_grad():
        bias.fill_(math.log(p / (1.0 - p)) / terms)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` tensor, at each position.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, H, W)`
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                                        self.eps).permute(0, 3, 1, 2)


_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "bn": nn.BatchNorm2d,
    "group": lambda c: nn.GroupNorm(min(32, c), c),
    "instance": lambda c: nn.InstanceNorm2d(c, affine=True),
    "layer": LayerNorm2d,
    "layernorm": LayerNorm2d,
    "identity": lambda c: nn.Identity(),
}


def create_norm(norm: LayerType, channels: int) -> nn.Module:
    """Build a 2-D norm layer for ``channels`` from a name (``"batch"``, ``"layer"``, ...), a class, or None."""
    if norm is None:
        return nn.Identity()
    if isinstance(norm, str):
        try:
            return _NORMS[norm.lower()](channels)
        except KeyError:
            raise ValueError(f"visattn: unknown norm {norm!r}; expected one of {sorted(_NORMS)}") from None
    return norm(channels)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below ``round_limit * value``.

    visattn modules do not round by default (the papers don't); this is here for users who want
    MobileNet-style widths.

    Example:
        >>> make_divisible(20), make_divisible(37, 8)
        (24, 40)
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


def reduced_channels(channels: int, reduction: float, rd_channels: int | None = None, min_channels: int = 1) -> int:
    """Bottleneck width ``C / r`` (floor, at least ``min_channels``), or ``rd_channels`` when given."""
    if rd_channels is not None:
        return int(rd_channels)
    return max(min_channels, int(channels // reduction))


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation, with 'same' padding for odd kernels.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size.
        stride: stride.
        dilation: dilation; padding is ``dilation * (kernel_size - 1) // 2`` so H, W are kept at stride 1.
        groups: conv groups.
        bias: conv bias (default: only when there is no norm).
        norm_layer: norm name / class, or None.
        act_layer: activation name / class, or None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool | None = None, norm_layer: LayerType = "batch",
                 act_layer: LayerType = "relu"):
        padding = dilation * (kernel_size - 1) // 2
        bias = norm_layer is None if bias is None else bias
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias),
            create_norm(norm_layer, out_channels),
            create_act(act_layer),
        )


def format_shape(x: torch.Tensor) -> str:
    """``(B, C, H, W)`` of ``x`` as text for error messages (symbolic sizes as they are)."""
    return "(" + ", ".join(str(int(s)) if isinstance(s, int) else str(s) for s in x.shape) + ")"


def check_input(module: nn.Module, x: torch.Tensor, channels: int | None, *, name: str = "input") -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, H, W)`` with no dimension zero.

    The message names the module, what it expected and what it got. Channel and rank checks are
    static under ``torch.compile`` / ``torch.export`` and stay in the graph.
    """
    if x.dim() != 4:
        raise ValueError(
            f"{type(module).__name__}: expected {name} of shape (B, {channels if channels else 'C'}, H, W), "
            f"got a {x.dim()}-D tensor of shape {format_shape(x)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{type(module).__name__}: expected {name} of shape (B, {channels}, H, W), got {format_shape(x)} "
            f"({x.shape[1]} channels instead of {channels})"
        )
    if not torch.compiler.is_compiling() and x.numel() == 0:  # B, H or W is 0: nothing to attend over
        raise ValueError(f"{type(module).__name__}: expected a non-empty {name}, got shape {format_shape(x)}")


def check_size(module: nn.Module, x: torch.Tensor, min_hw: int | tuple[int, int], why: str = "") -> None:
    """Raise ``ValueError`` if H or W of ``x`` is below ``min_hw``.

    Skipped while compiling or exporting (kornia's practice) so graphs stay whole with dynamic sizes.
    """
    if torch.compiler.is_compiling():
        return
    min_h, min_w = (min_hw, min_hw) if isinstance(min_hw, int) else min_hw
    h, w = x.shape[-2:]
    if h < min_h or w < min_w:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"{type(module).__name__}: expected H >= {min_h} and W >= {min_w}{reason}, "
            f"got input of shape {format_shape(x)}"
        )


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ints."""
    return -(-a // b)


class CeilAvgPool2d(nn.Module):
    """Average pool, kernel = stride = k, that also averages the partial windows at the bottom / right edge.

    Equals ``nn.AvgPool2d(k, k, ceil_mode=True)`` (a partial window is averaged over its in-bounds elements),
    written with window sums and explicit counts so that ``torch.export`` keeps H, W symbolic (the built-in
    ceil_mode output size adds a guard it cannot prove).
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = int(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        h, w = x.shape[-2:]
        ho, wo = (h + k - 1) // k, (w + k - 1) // k
        padded = nn.functional.pad(x, (0, wo * k - w, 0, ho * k - h))
        sums = nn.functional.avg_pool2d(padded, k, k, divisor_override=1)  # [B, C, ho, wo]
        rows = torch.clamp(h - torch.arange(ho, device=x.device) * k, max=k)  # in-bounds rows of each window
        cols = torch.clamp(w - torch.arange(wo, device=x.device) * k, max=k)
        return sums / (rows[:, None] * cols[None, :]).to(x.dtype)


def softmax32(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim``, computed in float32 for fp16 / bf16 input and returned in the input's dtype."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float().softmax(dim).to(t.dtype)
    return t.softmax(dim)


class Softmax32(nn.Module):
    """:func:`softmax32` as a module: the attention step that ``visattn.viz`` hooks (named ``attend``)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return softmax32(t, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
