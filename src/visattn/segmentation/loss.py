"""The segmentation loss: weighted per-pixel cross-entropy over a segmenter's outputs, with an ignored label.

A segmenter in training mode returns ``{"out": ..., "aux": ..., "pam": ...}`` and its ``loss_weights``; the loss
is their weighted sum of cross-entropies (mmseg's ``CrossEntropyLoss`` per head, ``loss_weight`` each). Pixels
labelled :data:`~visattn.data.seg_folders.IGNORE_INDEX` (255: borders, padding, unlabelled) never count;
``ignore_index`` names one more label to leave out (for example a "void" class 0). ``class_weight`` weights
each class's pixels, as torch's ``cross_entropy(weight=...)``: the mean divides by the summed weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = ["segmentation_loss", "check_class_weight", "NO_LABEL"]

#: the label of pixels without one (VOC's borders, crop padding, ADE20K's "other"); never counted
NO_LABEL = 255


def check_class_weight(class_weight: Sequence[float] | torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
    """``class_weight`` as a float32 tensor of ``num_classes`` finite, non-negative values (not all zero).

    Raises:
        ValueError: a wrong length, a negative or non-finite weight, or all zero.
    """
    if class_weight is None:
        return None
    values = [float(v) for v in (class_weight.tolist() if isinstance(class_weight, torch.Tensor) else class_weight)]
    if len(values) != num_classes:
        raise ValueError(f"class weights: {len(values)} given for {num_classes} classes")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"class weights must be finite and >= 0, got {bad[0]}")
    if not any(values):
        raise ValueError("class weights are all zero: nothing would be learned")
    return torch.tensor(values, dtype=torch.float32)


def segmentation_loss(outputs: Mapping[str, torch.Tensor], target: torch.Tensor, weights: Mapping[str, float], *,
                      ignore_index: int = NO_LABEL,
                      class_weight: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    r"""Weighted sum over ``weights`` of the cross-entropy of ``outputs[name]`` against ``target``.

    Args:
        outputs: logits by name, each ``(B, K, H, W)``.
        target: int64 labels ``(B, H, W)``; :data:`NO_LABEL` and ``ignore_index`` are left out.
        weights: loss weight by output name (a segmenter's ``loss_weights``).
        ignore_index: a label left out of the loss besides :data:`NO_LABEL`.
        class_weight: ``K`` per-class weights, or ``None``.

    Raises:
        ValueError: ``ignore_index`` is negative, or bad class weights (:func:`check_class_weight`).

    Shape:
        - Output: a scalar.
    """
    if ignore_index < 0:
        raise ValueError(f"ignore_index must be a label >= 0, got {ignore_index}")
    if ignore_index != NO_LABEL:
        target = target.masked_fill(target == ignore_index, NO_LABEL)
    k = next(iter(outputs.values())).shape[1]
    cw = check_class_weight(class_weight, k)
    cw = None if cw is None else cw.to(target.device)
    return sum(w * F.cross_entropy(outputs[name].float(), target, weight=cw, ignore_index=NO_LABEL)
               for name, w in weights.items())
