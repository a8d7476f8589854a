"""Cityscapes (Cordts et al., CVPR 2016) in its own layout: leftImg8bit/ images and gtFine/ trainId masks.

::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

The ``*_labelTrainIds.png`` masks hold the 19 evaluation classes (0..18) and 255 for everything else; they are
made from the official ``*_labelIds.png`` by cityscapesScripts' ``createTrainIdLabelImgs`` (mmseg's
``tools/dataset_converters/cityscapes.py`` does the same). Normalised with ImageNet's statistics.
"""

from __future__ import annotations

from pathlib import Path

from .datasets import register_dataset
from .seg_folders import IMAGENET_MEAN, IMAGENET_STD, FolderSource, SegDataError, SegFolder

__all__ = ["CITYSCAPES_CLASSES", "Cityscapes", "read_cityscapes"]

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")
IMAGE_SUFFIX, MASK_SUFFIX = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"


def read_cityscapes(root: str | Path, split: str, **kwargs) -> SegFolder:
    """Cityscapes' ``split`` (``train`` / ``val``) under ``root`` (the folder holding leftImg8bit/ and gtFine/)."""
    root = Path(root)
    image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not image_dir.is_dir():
        raise SegDataError(f"{image_dir}: folder not found (expected leftImg8bit/{split}/<city>/ and "
                           f"gtFine/{split}/<city>/)")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise SegDataError(f"{image_dir}: no *{IMAGE_SUFFIX} images in its city folders")
    pairs = []
    for image in images:
        mask = mask_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + MASK_SUFFIX)
        if not mask.is_file():
            raise SegDataError(f"{mask}: no trainId mask for image {image.name} (make the *{MASK_SUFFIX} files "
                               "with cityscapesScripts' createTrainIdLabelImgs)")
        pairs.append((image, mask))
    return SegFolder(pairs, list(CITYSCAPES_CLASSES), **kwargs)


@register_dataset("cityscapes", task="segmentation", channels=3, classes=CITYSCAPES_CLASSES, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, data_dir="with leftImg8bit/ and gtFine/ (with *_labelTrainIds.png masks)")
class Cityscapes(FolderSource):
    """Cityscapes: 19 classes of street scenes, 2,975 training and 500 validation images with fine masks."""

    def read(self, root, split):
        return read_cityscapes(root, split)
