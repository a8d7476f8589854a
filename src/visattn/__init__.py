"""visattn: visual attention mechanisms for PyTorch, faithful to their papers.

Example:
    >>> import torch, visattn
    >>> m = visattn.create("cbam", 64)
    >>> m(torch.randn(2, 64, 14, 14)).shape
    torch.Size([2, 64, 14, 14])
    >>> "resnet50" in visattn.backbones.list_backbones()  # subpackages load on first use
    True
"""

from __future__ import annotations

import importlib
from typing import Any

from .backbones.attach import attach
from .backbones.external import create_classifier
from .factory import layer
from .registry import ModuleInfo, create, info, list_modules, register
from .weights import load_pretrained

__version__ = "0.1.0"

__all__ = ["ModuleInfo", "create", "info", "list_modules", "register", "attach", "layer", "create_classifier",
           "load_pretrained", "load_run", "Run", "__version__"]

#: subpackages reachable as ``visattn.<name>`` without importing them first.
_SUBPACKAGES = ("backbones", "bench", "data", "layers", "modules", "ops", "train", "viz")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in ("load_run", "Run"):  # opening a run needs the training code: loaded on first use
        return getattr(importlib.import_module(".train.run", __name__), name)
    raise AttributeError(f"module 'visattn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES) | {"load_run", "Run"})
