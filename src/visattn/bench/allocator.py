"""glibc's allocator, pinned for stable CPU timings and reported with every measurement.

With its default, dynamic thresholds glibc serves large blocks with ``mmap`` and returns freed memory to
the OS, so the next call of a module faults its full-size temporaries in afresh (thousands of minor page
faults per call). Timings of light modules then swing 1.5-1.8x between processes. Pinning the thresholds
(as the environment variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` do at start-up, or
``mallopt`` here at run time) keeps freed blocks for reuse: the same process then measures the same code at
the same speed. jemalloc or tcmalloc (through ``LD_PRELOAD``) do the same by design.

:func:`pin_allocator` leaves the process alone when the user already chose (either environment variable
set, or jemalloc / tcmalloc preloaded), and is a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["pin_allocator", "allocator_state", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: glibc's largest accepted mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2): blocks below it come from
#: the heap and are reused; a larger value is refused by mallopt.
MMAP_THRESHOLD = 32 << 20
#: freed heap memory is returned to the OS only above this much (1 GiB)
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_state: dict = {}


def _preloaded() -> str | None:
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return name
    return None


def allocator_state() -> str:
    """One line: which allocator and settings this process's measurements ran with."""
    if _state.get("pinned"):
        return (f"glibc {platform.libc_ver()[1]}, mmap threshold {MMAP_THRESHOLD >> 20} MiB and trim threshold "
                f"{TRIM_THRESHOLD >> 20} MiB (pinned by visattn)")
    preloaded = _preloaded()
    if preloaded:
        return f"{preloaded} (LD_PRELOAD)"
    set_vars = [f"{v}={os.environ[v]}" for v in _ENV if v in os.environ]
    if set_vars:
        return f"glibc {platform.libc_ver()[1]}, " + ", ".join(set_vars) + " (environment)"
    libc = platform.libc_ver()
    if libc[0] == "glibc":
        return f"glibc {libc[1]}, default dynamic thresholds (timings may swing between processes)"
    return "system allocator (not glibc)"


def pin_allocator() -> str:
    """Pin glibc's mmap and trim thresholds (see the module docstring) unless the user chose.

    Returns:
        :func:`allocator_state` after the attempt.
    """
    if not _state.get("pinned") and _preloaded() is None and not any(v in os.environ for v in _ENV):
        if platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                _state["pinned"] = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                                        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                _state["pinned"] = False
    return allocator_state()
