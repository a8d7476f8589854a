"""``visattn.layer``: any registered module as a layer class for other libraries, e.g. timm's ``attn_layer``.

timm builds the attention of a block by calling ``attn_layer(channels, **kwargs)``: its ResNets and ByobNets pass
the factory arguments ``device`` and ``dtype``; its EfficientNet / MobileNet builder passes ``rd_ratio`` (and
calls ``se_layer(8, rd_ratio=1.0)`` once to see whether the layer takes it) and ``act_layer``. :func:`layer`
returns a callable that builds the visattn module from such a call:

- ``device`` / ``dtype`` are taken by every visattn module.
- ``rd_ratio`` (timm's bottleneck ratio) becomes ``rd_channels=round(channels * rd_ratio)`` (timm's rounding)
  for modules that have ``rd_channels``, else ``reduction=1 / rd_ratio`` for modules that have ``reduction``;
  it is dropped when :func:`layer` was given ``reduction`` or ``rd_channels`` itself.
- every other argument goes to the module unchanged, so one it does not take raises ``TypeError`` naming the
  module and what it accepts; list the ones to drop in ``ignore`` (e.g. ``ignore=("act_layer",)`` for ECA in an
  EfficientNet, which has no activation).
- arguments given to :func:`layer` itself win over those the caller passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from .registry import create, info

__all__ = ["AttentionLayer", "layer"]


class AttentionLayer:
    """A registered module with fixed keyword arguments, called as ``AttentionLayer(...)(channels, **kwargs)``.

    Args:
        key: registry key.
        ignore: argument names the caller may pass that are dropped.
        **kwargs: the module's keyword arguments.
    """

    def __init__(self, key: str, *, ignore: Iterable[str] = (), **kwargs: Any):
        self.key = info(key).key  # unknown key: KeyError now, not when timm builds its blocks
        self.ignore = tuple(ignore)
        self.kwargs = dict(kwargs)

    def __call__(self, channels: int, **kwargs: Any) -> nn.Module:
        accepted = info(self.key).defaults
        for name in self.ignore:
            kwargs.pop(name, None)
        if "rd_ratio" in kwargs and ("rd_channels" in accepted or "reduction" in accepted):
            ratio = float(kwargs.pop("rd_ratio"))
            if "reduction" not in self.kwargs and "rd_channels" not in self.kwargs:
                if "rd_channels" in accepted:
                    kwargs["rd_channels"] = max(1, round(channels * ratio))
                else:
                    kwargs["reduction"] = 1.0 / ratio
        kwargs.update(self.kwargs)
        return create(self.key, channels, **kwargs)

    def __repr__(self) -> str:
        args = [repr(self.key)] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        if self.ignore:
            args.append(f"ignore={self.ignore!r}")
        return f"visattn.layer({', '.join(args)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AttentionLayer) and (self.key, self.ignore, self.kwargs) == (
            other.key, other.ignore, other.kwargs)

    __hash__ = None  # type: ignore[assignment]


def layer(key: str, *, ignore: Iterable[str] = (), **kwargs: Any) -> AttentionLayer:
    """Registered module ``key`` as a layer class: ``layer(key, **kw)(channels, **more)`` builds it.

    Pass it where a library expects an attention layer class, e.g. timm's ``attn_layer`` (see the module
    docstring for how the arguments timm passes are handled).

    Args:
        key: registry key (``visattn.list_modules()``).
        ignore: names of arguments the caller passes that this module should not receive.
        **kwargs: the module's own keyword arguments; they win over the caller's.

    Returns:
        A callable ``(channels, **kwargs) -> nn.Module``.

    Raises:
        KeyError: unknown ``key``.

    Example:
        >>> cbam = layer("cbam", reduction=8)
        >>> m = cbam(64, device="meta")
        >>> type(m).__name__, next(m.parameters()).is_meta
        ('CBAM', True)
        >>> layer("se")(64, rd_ratio=0.25).fc1.out_channels
        16
    """
    return AttentionLayer(key, ignore=ignore, **kwargs)
