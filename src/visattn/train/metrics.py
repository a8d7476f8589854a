"""Segmentation scores from a confusion matrix: per-class IoU, mIoU and pixel accuracy (as mmseg's ``IoUMetric``)."""

from __future__ import annotations

import math

import torch

__all__ = ["confusion_matrix", "segmentation_scores"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``(K, K)`` int64 counts: row = true class, column = predicted class; ignored pixels left out.

    Args:
        pred: predicted classes, any shape.
        target: true classes, the same shape; ``ignore_index`` marks unlabelled pixels.
        num_classes: :math:`K`.
        ignore_index: label of pixels that are not counted.
    """
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_scores(confusion: torch.Tensor) -> dict[str, float | list[float]]:
    """Per-class IoU, mIoU and pixel accuracy (in percent) of a ``(K, K)`` confusion matrix.

    IoU = TP / (TP + FP + FN) per class; mIoU is their mean over the classes that occur (in truth or
    prediction): a class with no pixels in either has IoU NaN and is left out (mmseg's ``nanmean``). Pixel
    accuracy = correct / labelled pixels.
    """
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    present = ~iou.isnan()
    miou = iou[present].mean().item() if present.any() else math.nan
    total = c.sum().item()
    return {"miou": 100 * miou, "pixel_accuracy": 100 * tp.sum().item() / total if total else math.nan,
            "per_class_iou": [100 * v for v in iou.tolist()]}
