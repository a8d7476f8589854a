"""The catalogue of decode heads: ``@register_head`` on each head's class, :func:`create_head` by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...catalogue import Catalogue
from .base import DecodeHead

__all__ = ["HeadInfo", "HEADS", "register_head", "head_info", "create_head"]


@dataclass(frozen=True)
class HeadInfo:
    """One registered decode head.

    Attributes:
        key: its name (``"cc"``), the name :func:`create_head` and ``create_segmenter`` take.
        cls: the head's class.
        modules: registry keys of the attention modules it is built around (empty for FCN).
        size_bound: the head is built for one feature size and takes ``feature_size=(h, w)``.
        summary: the first line of the class docstring.
    """

    key: str
    cls: type[DecodeHead]
    modules: tuple[str, ...] = ()
    size_bound: bool = False
    summary: str = ""


def _head_info(key: str, cls: type[DecodeHead], *, modules: tuple[str, ...] = (),
               size_bound: bool = False) -> HeadInfo:
    if not (isinstance(cls, type) and issubclass(cls, DecodeHead)):
        raise ValueError(f"visattn: decode head {key!r} must be a DecodeHead subclass, got {cls!r}")
    doc = (cls.__doc__ or "").strip()
    return HeadInfo(key, cls, tuple(modules), size_bound, doc.splitlines()[0] if doc else "")


#: decode heads by name, in registration order, filled when :mod:`visattn.segmentation.heads` is imported
HEADS: Catalogue[HeadInfo] = Catalogue("segmentation head", _head_info, package="visattn.segmentation.heads",
                                       lister="`visattn.segmentation.list_heads()` lists all names.")


def register_head(key: str, *, modules: tuple[str, ...] = (), size_bound: bool = False) -> Callable[[Any], Any]:
    """Class decorator adding a :class:`~.base.DecodeHead` subclass to :data:`HEADS` under ``key``.

    Args:
        key: the head's name.
        modules: registry keys of the attention modules the head is built around.
        size_bound: the head takes ``feature_size=(h, w)`` (PSANet's masks are sized for one feature map).
    """
    return HEADS.decorator(key, modules=modules, size_bound=size_bound)


def head_info(name: str) -> HeadInfo:
    """The :class:`HeadInfo` of ``name``; ``KeyError`` with the closest names if unknown."""
    return HEADS.get(name)


def create_head(name: str, in_channels: int, channels: int, num_classes: int, *,
                feature_size: tuple[int, int] | None = None, **kwargs: Any) -> DecodeHead:
    """Build decode head ``name`` (one of :data:`HEADS`); ``feature_size`` is needed by size-bound heads (``psa``).

    Raises:
        ValueError: unknown ``name`` (the closest names are suggested), or a size-bound head without
            ``feature_size``.
    """
    if name not in HEADS:
        raise ValueError(HEADS.unknown_message(name).removeprefix("visattn: "))
    meta = HEADS.get(name)
    if meta.size_bound:
        if feature_size is None:
            raise ValueError(f"the {name} head is bound to a feature size: give the input size")
        kwargs["feature_size"] = feature_size
    return meta.cls(in_channels, channels, num_classes, **kwargs)
