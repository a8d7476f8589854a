"""Timing: the forward and forward+backward steps, warm-up, synchronisation, and percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["forward_step", "training_step", "time_step", "summarize", "percentile", "synchronizer"]


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the module returned {type(out).__name__}; expected a tensor")


def forward_step(module: nn.Module, inputs: Sequence[torch.Tensor]) -> Callable[[], None]:
    """One forward in eval mode under ``torch.inference_mode`` (what inference costs)."""
    module.eval()

    def run() -> None:
        with torch.inference_mode():
            module(*inputs)

    return run


def training_step(module: nn.Module, inputs: Sequence[torch.Tensor]) -> Callable[[], None]:
    """One forward + backward in train mode, gradients to the parameters and the inputs.

    The inputs require gradients as they would inside a network; the upstream gradient is made on the
    first call and kept; parameter and input gradients are dropped (``None``) before each step so each
    step allocates them afresh, as a training step after ``zero_grad()`` does. The returned function's
    ``clear_grads()`` drops them outside a step.
    """
    module.train()
    leaves = tuple(t.detach().requires_grad_(True) for t in inputs)
    params = [p for p in module.parameters() if p.requires_grad]
    upstream: list[torch.Tensor] = []

    def clear_grads() -> None:
        for p in params:
            p.grad = None
        for t in leaves:
            t.grad = None

    def run() -> None:
        clear_grads()
        out = _first_tensor(module(*leaves))
        if not upstream:
            gen = torch.Generator().manual_seed(1)
            upstream.append(torch.randn(out.shape, generator=gen).to(out.device, out.dtype))
        out.backward(upstream[0])

    run.clear_grads = clear_grads  # memory measurements drop the previous step's gradients before their baseline
    return run


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


#: with a time budget, at least this many samples are still taken (so p10 / p90 mean something)
MIN_SAMPLES = 3


def time_step(run: Callable[[], None], *, repeat: int, warmup: int, device: str = "cpu",
              max_time: float | None = None) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``run`` after ``warmup`` untimed calls.

    On CUDA the queue is drained before and after each call, so each sample is the call's whole time.
    With ``max_time`` (seconds), timing stops early once the samples add up to it and there are at least
    :data:`MIN_SAMPLES` of them (and warm-up stops after one call that took longer than ``max_time``),
    so slow modules at large sizes do not hold the run up; the number of samples is reported.
    """
    sync = synchronizer(device)
    for _ in range(warmup):
        start = time.perf_counter()
        run()
        sync()
        if max_time is not None and time.perf_counter() - start > max_time:
            break
    sync()
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - start)
        if max_time is not None and len(samples) >= MIN_SAMPLES and sum(samples) >= max_time:
            break
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float]) -> dict:
    """Median, p10, p90 (milliseconds) and the number of samples."""
    ms = [s * 1e3 for s in samples_s]
    return {"median": percentile(ms, 50), "p10": percentile(ms, 10), "p90": percentile(ms, 90), "n": len(ms)}
