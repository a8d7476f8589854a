r"""Grad-CAM: where the class score depends on a convolutional stage's activations.

Selvaraju et al. "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
ICCV 2017. https://arxiv.org/abs/1610.02391

For a stage with activations :math:`A^k` (channel :math:`k`) and the class score :math:`y^c` (the logit,
before softmax):

.. math::
    \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}},\qquad
    L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)

For a network ending in global average pooling and one linear layer, :math:`L^c` is the class activation
map of Zhou et al. (CVPR 2016) divided by :math:`Z`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["grad_cam", "find_last_stage"]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


@torch.no_grad()
def find_last_stage(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last top-level child of ``model`` (in call order) whose output is a ``(B, C, h, w)`` map, h*w > 1.

    For the ResNets of :mod:`visattn.backbones` (and torchvision's) that is the last ``layer{k}``, the last
    convolutional stage, whose output feeds the global pooling.

    Raises:
        ValueError: no child gives a spatial map.
    """
    calls: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, child in model.named_children():
        def hook(module, args, output, name=name):
            t = _first_tensor(output)
            if t is not None:
                calls.append((name, tuple(t.shape)))

        handles.append(child.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    spatial = [name for name, shape in calls if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not spatial:
        raise ValueError(f"find_last_stage: no child of {type(model).__name__} outputs a (B, C, h, w) map with "
                         f"h*w > 1 (children called: {[n for n, _ in calls]}); name the layer explicitly")
    return spatial[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of ``target`` classes at the output of ``model``'s submodule ``layer``.

    Args:
        model: a classifier, ``(B, ...) -> (B, num_classes)`` logits; put it in ``eval()`` mode first (in
            training mode BatchNorm mixes the images of the batch).
        x: a batch of inputs.
        layer: path of the submodule whose output :math:`A` is explained (e.g. ``"layer3"``;
            :func:`find_last_stage` finds the last stage).
        target: class per image ``(B,)``; default: the predicted class.

    Returns:
        ``(cam, logits)``: maps :math:`L^c` of shape ``(B, h, w)`` at the layer's resolution (not normalised,
        non-negative), and the logits ``(B, num_classes)``, both detached.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                     nn.Linear(4, 3)).eval()
        >>> cam, logits = grad_cam(net, torch.randn(2, 1, 8, 8), "1")
        >>> cam.shape, logits.shape
        (torch.Size([2, 8, 8]), torch.Size([2, 3]))
    """
    module = model.get_submodule(layer)
    store: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, args: tuple, output: Any) -> None:
        t = _first_tensor(output)
        if t is not None:
            store["a"] = t  # the last call wins: the value that reaches the head

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))  # input grad: works with frozen weights too
            if "a" not in store:
                raise ValueError(f"grad_cam: layer {layer!r} was not called in the forward pass")
            a = store["a"]
            if a.dim() != 4:
                raise ValueError(f"grad_cam: layer {layer!r} gives shape {tuple(a.shape)}, expected (B, C, h, w)")
            if target is None:
                target = logits.argmax(1)
            score = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()  # images are independent in eval
            # Gradient with respect to the activation as it stands after the forward pass (if a later op changed
            # it in place, both the gradient and the values below refer to the changed tensor).
            (grad,) = torch.autograd.grad(score, a)
    finally:
        handle.remove()
    weights = grad.float().mean((2, 3), keepdim=True)  # alpha_k^c: [B, C, 1, 1]
    cam = torch.relu((weights * a.detach().float()).sum(1))  # [B, h, w]
    return cam, logits.detach()
