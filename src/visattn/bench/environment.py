"""What the numbers were measured on: device, library versions, threads, CPU model."""

from __future__ import annotations

import os
import platform

import torch

import visattn

from .allocator import allocator_state

__all__ = ["cpu_model", "environment"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment(device: str) -> dict:
    """Facts about the machine and the libraries, for the benchmark's JSON."""
    dev = torch.device(device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return {
        "device": str(dev),
        "device_name": gpu or cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "flush_denormal": dev.type == "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "visattn": visattn.__version__,
        "allocator": allocator_state() if dev.type == "cpu" else "CUDA caching allocator",
    }
