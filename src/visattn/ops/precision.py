"""The one compute-dtype rule of visattn's attention maths: float64 stays float64, everything else computes in float32.

Energies, softmaxes and EM steps of bf16 / fp16 inputs (autocast included) lose too much in their own
precision, so they run in float32; float64 inputs keep float64, so that the float64 reference tests compare
exact maths. Every module and kernel asks :func:`compute_dtype`, so that the rule is written once.
"""

from __future__ import annotations

import torch

__all__ = ["compute_dtype"]


def compute_dtype(*inputs: torch.Tensor | torch.dtype | None) -> torch.dtype:
    """``torch.float64`` if any of ``inputs`` (tensors or dtypes; ``None``: the default) is float64, else float32.

    Example:
        >>> compute_dtype(torch.zeros(1, dtype=torch.bfloat16))
        torch.float32
        >>> compute_dtype(torch.float32, torch.float64)
        torch.float64
    """
    dtypes = (t.dtype if isinstance(t, torch.Tensor) else t for t in inputs)
    return torch.float64 if any(d == torch.float64 for d in dtypes) else torch.float32
