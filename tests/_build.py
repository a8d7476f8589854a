"""How the registry-wide tests build any registered module and its inputs, by role."""

from __future__ import annotations

import torch

import visattn

CHANNELS = 64


def ceil_half(n: int) -> int:
    return -(-n // 2)


def build(key: str, channels: int = CHANNELS, size: tuple[int, int] = (16, 16), **kwargs):
    """Module for ``key`` at ``channels``, built for ``size`` when it is size-bound."""
    meta = visattn.info(key)
    if meta.size_bound:
        kwargs.setdefault("feature_size", tuple(size))
    return visattn.create(key, channels, **kwargs)


def make_inputs(key: str, batch: int, channels: int, size: tuple[int, int], dtype=torch.float32, gen=None):
    """The forward's positional inputs: ``(x,)``, or ``(x, g)`` for a gate (g on a 2x coarser grid)."""
    h, w = size
    x = torch.randn(batch, channels, h, w, generator=gen, dtype=dtype)
    if visattn.info(key).role == "gate":
        g = torch.randn(batch, channels, ceil_half(h), ceil_half(w), generator=gen, dtype=dtype)
        return (x, g)
    return (x,)


def expected_shape(key: str, module, inputs) -> tuple[int, ...]:
    return tuple(inputs[0].shape)


def min_size(module) -> int:
    return int(getattr(module, "min_size", 1))


def randomize_(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Perturb every parameter so zero-initialised gates/scales (gamma = 0, zero last convs) pass gradient."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module
