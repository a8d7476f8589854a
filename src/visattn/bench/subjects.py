"""What the benchmark builds: a registered module, a baseline convolution or a peer, with its inputs.

A :class:`Spec` is a plain, JSON-serialisable description, so that the child process that measures
peak memory on the CPU (:mod:`visattn.bench.memory`) builds exactly what the parent timed.
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

import visattn

__all__ = ["BASELINES", "Spec", "build_module", "build_subject", "make_inputs", "parse_dtype", "DTYPES"]

#: dtype names the benchmark accepts, with their short aliases
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}

#: baseline name -> (factory of channels, what it is in words)
BASELINES: dict[str, tuple] = {
    "conv3x3": (lambda c: nn.Conv2d(c, c, 3, padding=1, bias=False), "nn.Conv2d(C, C, 3, padding=1, bias=False)"),
    "conv1x1": (lambda c: nn.Conv2d(c, c, 1, bias=False), "nn.Conv2d(C, C, 1, bias=False)"),
    "dwconv3x3": (lambda c: nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                  "nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)"),
}


def parse_dtype(name: str) -> torch.dtype:
    """``torch.dtype`` for a name in :data:`DTYPES`; ``ValueError`` otherwise."""
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of float32, bfloat16, float16") from None


@dataclass(frozen=True)
class Spec:
    """One thing to measure, in words that survive a trip through JSON.

    Attributes:
        kind: ``"module"`` (a registry key), ``"baseline"`` (a :data:`BASELINES` name) or ``"peer"``
            (a :data:`visattn.bench.peers.PEERS` entry, named ``"<key>:<peer name>"``).
        name: the registry key, baseline name, or ``"<key>:<peer name>"``.
        channels: input channels ``C``.
        size: feature size ``(H, W)``.
        batch: batch size ``B``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: a :data:`DTYPES` name.
        channels_last: inputs and module in ``torch.channels_last``.
        kwargs: the module's keyword arguments (``kind == "module"``), e.g. ``{"groups": 8}``; in JSON each
            value is written as its Python literal, so tuples come back as tuples.
    """

    kind: str
    name: str
    channels: int
    size: tuple[int, int]
    batch: int
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    kwargs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**asdict(self), "kwargs": {k: repr(v) for k, v in self.kwargs.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Spec:
        kwargs = {k: ast.literal_eval(v) for k, v in data.get("kwargs", {}).items()}
        return cls(**{**data, "size": tuple(data["size"]), "kwargs": kwargs})


def build_module(key: str, channels: int, size: tuple[int, int], **kwargs) -> nn.Module:
    """The registered module ``key`` with ``kwargs`` (else its defaults), built for ``size`` when size-bound.

    Raises:
        ValueError: the module cannot be built for ``channels`` / ``size``.
    """
    if visattn.info(key).size_bound:
        kwargs.setdefault("feature_size", tuple(size))
    return visattn.create(key, channels, **kwargs)


def _role(spec: Spec) -> str:
    return visattn.info(spec.name).role if spec.kind == "module" else "plugin"


def make_inputs(role: str, batch: int, channels: int, size: tuple[int, int], *, device: str = "cpu",
                dtype: torch.dtype = torch.float32, channels_last: bool = False, seed: int = 0) -> tuple:
    """Random forward inputs: ``(x,)``, or ``(x, g)`` for a gate (``g`` at ``ceil(H/2) x ceil(W/2)``).

    Inputs are drawn on the CPU from a seeded generator, then moved, so every device sees the same values.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    shapes = [(batch, channels, h, w)]
    if role == "gate":
        shapes.append((batch, channels, math.ceil(h / 2), math.ceil(w / 2)))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(torch.randn(s, generator=gen).to(device=device, dtype=dtype, memory_format=fmt) for s in shapes)


def build_subject(spec: Spec) -> tuple[nn.Module, tuple]:
    """The module a :class:`Spec` describes, on its device, dtype and memory format, with its inputs.

    Raises:
        ValueError: the module cannot be built for this channel count or size.
        ImportError: a peer's library is not installed.
    """
    if spec.kind == "module":
        module = build_module(spec.name, spec.channels, spec.size, **spec.kwargs)
    elif spec.kind == "baseline":
        module = BASELINES[spec.name][0](spec.channels)
    elif spec.kind == "peer":
        from .peers import build_peer

        key, _, peer = spec.name.partition(":")
        module = build_peer(key, peer, spec.channels)
    else:
        raise ValueError(f"unknown kind {spec.kind!r}")
    dtype = parse_dtype(spec.dtype)
    module = module.to(device=spec.device, dtype=dtype)
    if spec.channels_last:
        module = module.to(memory_format=torch.channels_last)
    inputs = make_inputs(_role(spec), spec.batch, spec.channels, spec.size, device=spec.device, dtype=dtype,
                         channels_last=spec.channels_last)
    return module, inputs
