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


def randomize_(module: torch.nn.Module, std: float = 0.2, seed: int = 1) -> torch.nn.Module:
    """Perturb every float parameter and buffer, so no attention branch is the identity at initialisation.

    Zero-initialised gates and scales (gamma / alpha / beta = 0, zero last convs, zero BN weights) get normal
    noise of ``std`` like every other parameter; BatchNorm running means get noise and running variances a
    random factor in about [0.5, 2] (they stay positive); other float buffers (EMA's bases) get noise.
    Integer buffers (``num_batches_tracked``) are left alone.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
        for name, b in module.named_buffers():
            if not b.is_floating_point():
                continue
            noise = torch.randn(b.shape, generator=g, dtype=b.dtype)
            if name.endswith("running_var"):
                b.mul_(torch.exp(noise * 0.35))
            else:
                b.add_(noise * std)
    return module


#: a smaller perturbation where the default one leaves the module degenerate: STN's theta comes out of a
#: 32-wide linear layer, and noise of 0.2 on it moves the sampled window off the image (an all-zero output)
PERTURB_STD = {"stn": 0.05}


def perturbed(key: str, module: torch.nn.Module) -> torch.nn.Module:
    """``module`` (built for registry ``key``) with every parameter and buffer perturbed (:func:`randomize_`)."""
    return randomize_(module, std=PERTURB_STD.get(key, 0.2))
