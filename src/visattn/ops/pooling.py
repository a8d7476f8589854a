"""Pooling helpers for the context modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CeilMaxPool2d"]


class CeilMaxPool2d(nn.Module):
    r"""``k x k`` max pooling with stride ``k`` that keeps a partial last window (``ceil(H / k)`` outputs).

    Equal to ``nn.MaxPool2d(k, ceil_mode=True)``, written as a ``k - 1`` wide ``-inf`` pad at the bottom and
    right followed by a floor-mode pool: the output size ``(H + k - 1) // k`` is then a plain expression that
    ``torch.export`` can reason about with dynamic H, W (ceil mode adds a guard it cannot prove). Any size
    works, 1 x 1 included. A dynamic-shape export still specialises a pooled size of 1, so it needs
    ``H, W > k``.

    Args:
        kernel_size: window and stride ``k``.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, C, \lceil H/k \rceil, \lceil W/k \rceil)`

    Example:
        >>> CeilMaxPool2d(2)(torch.randn(1, 3, 5, 1)).shape
        torch.Size([1, 3, 3, 1])
    """

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        self.kernel_size = int(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.max_pool2d(F.pad(x, (0, k - 1, 0, k - 1), value=float("-inf")), k, k)
