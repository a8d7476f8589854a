"""The ``image-folder`` data set: an ImageFolder tree (train/<class>/..., val/<class>/... or test/), any images.

Decoded into memory when the decoded images fit a memory budget, else streamed from disk by
:mod:`.streaming`; resized to ``image_size`` squares and normalised with the training split's statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .base import ImageData, image_stats
from .datasets import ClassificationSource, register_dataset
from .image_folder import decode_image, scan_image_folder
from .streaming import StreamedImageData, folder_statistics

__all__ = ["ImageFolderData", "load_image_folder_splits"]


def load_image_folder_splits(root: Path, image_size: int, memory_budget_mb: int):
    """Train and val data of an ImageFolder tree: decoded in memory when it fits the budget, else streamed."""
    val_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or val_dir is None:
        raise FileNotFoundError(f"{root}: expected train/<class>/... and val/<class>/... (or test/)")
    tr_paths, tr_y, classes = scan_image_folder(root / "train")
    te_paths, te_y, val_classes = scan_image_folder(val_dir)
    if val_classes != classes:
        raise ValueError(f"{root}: train and {val_dir.name} have different classes")
    decoded_bytes = (len(tr_paths) + len(te_paths)) * 3 * image_size * image_size
    if decoded_bytes <= memory_budget_mb * 2**20:
        tr_x = torch.stack([decode_image(p, image_size) for p in tr_paths])
        te_x = torch.stack([decode_image(p, image_size) for p in te_paths])
        mean, std = image_stats(tr_x)
        return ImageData(tr_x, tr_y, classes, mean, std), ImageData(te_x, te_y, classes, mean, std)
    train = StreamedImageData(tr_paths, tr_y, classes, (0.0,) * 3, (1.0,) * 3, image_size)
    mean, std = folder_statistics(train)
    train.mean, train.std = mean, std
    return train, StreamedImageData(te_paths, te_y, classes, mean, std, image_size)


@register_dataset("image-folder", task="classification", channels=3,
                  data_dir="with train/ and val/ (or test/) class folders")
class ImageFolderData(ClassificationSource):
    """Your own images in an ImageFolder tree: one folder per class under train/ and val/ (or test/)."""

    def load(self, data_dir, *, image_size, memory_budget_mb, options):
        return load_image_folder_splits(Path(data_dir), image_size, memory_budget_mb)
