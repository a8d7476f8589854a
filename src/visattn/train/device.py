"""The device a run uses, and mixed precision as training and evaluation use it (bf16 on CPU, fp16 on CUDA)."""

from __future__ import annotations

import torch

__all__ = ["amp_dtype", "autocast", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a device.

    Raises:
        ValueError: CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype of ``device``: float16 on CUDA (with a grad scaler), bfloat16 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """``torch.autocast`` on ``device`` in :func:`amp_dtype`, a no-op when not ``enabled``."""
    return torch.autocast(device.type, dtype=amp_dtype(device), enabled=enabled)
