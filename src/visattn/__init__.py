"""visattn: visual attention mechanisms for PyTorch, faithful to their papers.

Example:
    >>> import torch, visattn
    >>> m = visattn.create("cbam", 64)
    >>> m(torch.randn(2, 64, 14, 14)).shape
    torch.Size([2, 64, 14, 14])
"""

from .registry import ModuleInfo, create, info, list_modules, register

__version__ = "0.1.0"

__all__ = ["ModuleInfo", "create", "info", "list_modules", "register", "attach", "__version__"]


def attach(model, key, position="standard", **kwargs):
    """Insert attention module ``key`` into every residual block of a ResNet, in place (see backbones.attach)."""
    from .backbones.attach import attach as _attach

    return _attach(model, key, position=position, **kwargs)
