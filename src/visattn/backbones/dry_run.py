"""One run of a network on a zero image, to read what attach needs (channels, feature sizes) without changing it.

The run is in eval mode and without gradients, so BatchNorm running statistics and every other training-time
state stay as they were; the train / eval flag of every submodule is restored one by one afterwards (a model
in training with some parts frozen in eval mode keeps exactly that mix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["TRACE_SIZE", "first_conv", "last_axis_width", "run_once", "trace"]

Size = tuple[int, int]

#: input size of the dry run when the caller gives no ``input_size``.
TRACE_SIZE: Size = (64, 64)


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first ``nn.Conv2d`` of ``model`` (its input channels are the network's), or ``None``."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def run_once(model: nn.Module, input_size: Size) -> None:
    """Run ``model`` in eval mode without gradients on one zero image of ``input_size``.

    Raises:
        ValueError: the model has no ``Conv2d``, so its input channels are unknown.
    """
    first = first_conv(model)
    if first is None:
        raise ValueError(f"attach: {type(model).__name__} has no Conv2d, so its input channels are unknown")
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, first.in_channels, *input_size, device=device, dtype=dtype))
    finally:
        for m, training in flags:
            m.training = training


def trace(model: nn.Module, targets: Sequence[tuple[str, nn.Module, str]], input_size: Size) -> dict[str, Any]:
    """Shapes seen at ``targets`` in one dry run: ``{name: shape tuple}`` (a type name for a non-tensor).

    Args:
        model: the network.
        targets: ``(name, module, "output" | "input")``: record the module's output or its first input.
        input_size: ``(H, W)`` of the zero image.

    Returns:
        The recorded shapes; a target that the forward does not run is missing.

    Raises:
        ValueError: the model does not run on such an input (one line with the model's own error).
    """
    shapes: dict[str, Any] = {}

    def record(name: str, value: Any) -> None:
        shapes[name] = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__

    handles = []
    for name, module, what in targets:
        if what == "output":
            handles.append(module.register_forward_hook(lambda m, a, out, name=name: record(name, out)))
        else:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, name=name: record(name, a[0] if a else None)))
    try:
        run_once(model, input_size)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001  (any failure of a foreign model's forward is reported as one line)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"attach: the feature maps cannot be read: running {type(model).__name__} on a "
                         f"{tuple(input_size)} input failed ({type(err).__name__}: {message}); pass input_size=(H, W) "
                         "that it accepts") from None
    finally:
        for h in handles:
            h.remove()
    return shapes


def last_axis_width(module: nn.Module) -> int | None:
    """Width of ``module``'s last layer when that layer acts on the *last* axis (``nn.Linear``, ``nn.LayerNorm``).

    Such a module outputs channels-last tensors ``(N, H, W, C)`` when it outputs a 4-d tensor at all (Swin's MLPs
    and norms); ``None`` when its last width-carrying layer is a convolution or a 2-d norm (channels first).
    """
    for m in reversed(list(module.modules())):
        if isinstance(m, nn.Linear):
            return int(m.out_features)
        if isinstance(m, nn.LayerNorm) and m.normalized_shape:
            return int(m.normalized_shape[-1])
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm)) or type(m).__name__ == "FrozenBatchNorm2d":
            return None
    return None
