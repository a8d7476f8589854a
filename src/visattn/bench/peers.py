"""The same modules in timm and torchvision, built with visattn's settings, for ``visattn bench --peers``.

Each peer reads the visattn module's defaults (``visattn.info(key).defaults``) so both sides have the
same widths: for example timm's ``SEModule`` rounds its bottleneck to multiples of 8 unless
``rd_divisor=1``. A peer whose library is not installed, or whose visattn key is not registered, is
skipped with a reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

import visattn

__all__ = ["Peer", "PEERS", "peers_for", "build_peer"]


@dataclass(frozen=True)
class Peer:
    """A third-party implementation of a visattn module.

    Attributes:
        name: short name, ``"timm SEModule"``.
        target: ``"module.path:ClassName"`` to import.
        settings: the arguments it is built with, in words (goes into the report).
        make: ``make(cls, channels, defaults)`` builds it from the class, the channels and the visattn
            module's constructor defaults.
    """

    name: str
    target: str
    settings: str
    make: Callable[[type, int, dict], nn.Module]


def _r(defaults: dict, fallback: float) -> float:
    return float(defaults.get("reduction") or fallback)


def _gc(cls: type, c: int, d: dict) -> nn.Module:
    fusion = str(d.get("fusion", "add"))
    return cls(c, fuse_add="add" in fusion, fuse_scale="mul" in fusion, rd_ratio=1 / _r(d, 16), rd_divisor=1)


#: visattn key -> its peers
PEERS: dict[str, tuple[Peer, ...]] = {
    "se": (
        Peer("timm SEModule", "timm.layers.squeeze_excite:SEModule", "rd_ratio=1/r, rd_divisor=1",
             lambda cls, c, d: cls(c, rd_ratio=1 / _r(d, 16), rd_divisor=1)),
        Peer("torchvision SqueezeExcitation", "torchvision.ops.misc:SqueezeExcitation", "squeeze_channels=C//r",
             lambda cls, c, d: cls(c, max(1, int(c // _r(d, 16))))),
    ),
    "eca": (
        Peer("timm EcaModule", "timm.layers.eca:EcaModule", "kernel from C with gamma=2, beta=1",
             lambda cls, c, d: cls(c, gamma=d.get("gamma", 2), beta=d.get("b", 1))),
    ),
    "cbam": (
        Peer("timm CbamModule", "timm.layers.cbam:CbamModule",
             "rd_ratio=1/r, rd_divisor=1, mlp_bias=True, 7x7 spatial conv",
             lambda cls, c, d: cls(c, rd_ratio=1 / _r(d, 16), rd_divisor=1, mlp_bias=True,
                                   spatial_kernel_size=int(d.get("kernel_size") or 7))),
    ),
    "gc": (
        Peer("timm GlobalContext", "timm.layers.global_context:GlobalContext",
             "fusion as visattn's default (add), rd_ratio=1/r, rd_divisor=1", _gc),
    ),
    "coord": (
        Peer("timm CoordAttn", "timm.layers.coord_attn:CoordAttn", "rd_channels=max(8, C//r), bias=True",
             lambda cls, c, d: cls(c, rd_channels=max(int(d.get("min_channels") or 8), int(c // _r(d, 32))),
                                   bias=True)),
    ),
}


def peers_for(key: str) -> tuple[Peer, ...]:
    """The peers of a visattn key (empty when it has none)."""
    return PEERS.get(key, ())


def _import(target: str) -> type:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_peer(key: str, name: str, channels: int) -> nn.Module:
    """Build the peer ``name`` of visattn ``key`` at ``channels``.

    Raises:
        ImportError: its library (or the class) is not available.
        KeyError: ``key`` is not registered, or has no peer called ``name``.
    """
    for peer in peers_for(key):
        if peer.name == name:
            try:
                cls = _import(peer.target)
            except AttributeError as err:
                raise ImportError(f"{peer.target} not found: {err}") from None
            return peer.make(cls, channels, dict(visattn.info(key).defaults))
    raise KeyError(f"no peer {name!r} for {key!r}")
