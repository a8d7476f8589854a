"""Building a registered module for one place of a network: its channels, feature size, device and dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import create, info
from .swap import inherit_widths, keep_checkpoint_keys

__all__ = ["build_module", "factory_kwargs"]

Size = tuple[int, int]


def factory_kwargs(model: nn.Module) -> dict[str, Any]:
    """``device`` / ``dtype`` of the model's first floating-point parameter: new modules are built to match."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return {} if param is None else {"device": param.device, "dtype": param.dtype}


def build_module(key: str, channels: int, size: Size | None, kwargs: Mapping[str, Any], place: str, *,
                 replacing: nn.Module | None = None, **fixed: Any) -> nn.Module:
    """Module ``key`` for a feature map of ``channels`` channels (and spatial ``size``) at ``place``.

    Args:
        key: registry key.
        channels: channels at the place.
        size: ``(H, W)`` at the place, when known; size-bound modules need it.
        kwargs: the caller's keyword arguments of the module.
        place: the place, in words, for error messages.
        replacing: the network's own module that the new one takes the place of (its widths are inherited, its
            checkpoint keys kept: :mod:`visattn.backbones.swap`).
        **fixed: arguments the backbone sets at this place (``out_channels``, ``stride`` of a replaced conv).

    Raises:
        ValueError: the caller passes an argument that the backbone sets, a size-bound module without a size,
            or a feature map smaller than the module needs.
    """
    meta = info(key)
    kw = dict(kwargs)
    clash = sorted(set(kw) & (set(fixed) | ({"feature_size"} if meta.size_bound else set())))
    if clash:
        raise ValueError(f"attach: {clash} of {key!r} are set by the backbone at each place; do not pass them")
    kw = inherit_widths(key, kw, replacing, channels)
    kw.update(fixed)
    if meta.size_bound:
        if size is None:
            raise ValueError(f"attach: {key!r} is bound to one feature size; pass input_size=(H, W) so that the size "
                             f"at {place} can be computed")
        kw["feature_size"] = tuple(int(v) for v in size)
    module = create(key, channels, **kw)
    low = getattr(module, "min_size", 1)
    low = (low, low) if isinstance(low, int) else tuple(low)
    if size is not None and (size[0] < low[0] or size[1] < low[1]):
        raise ValueError(f"attach: {type(module).__name__} ({key!r}) needs H >= {low[0]} and W >= {low[1]}, but "
                         f"the feature map at {place} is {tuple(size)} for this input_size; use a larger input_size "
                         "or fewer stages")
    keep_checkpoint_keys(module, replacing)
    return module
