"""ADE20K (Zhou et al., CVPR 2017) as the SceneParsing challenge ships it: ADEChallengeData2016/.

::

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_<n>.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_<n>.png

150 classes. The masks store class k as k + 1 and 0 for "other" (no label): 0 becomes the ignore index and
every other value drops by one (mmseg's ``reduce_zero_label=True``). Normalised with ImageNet's statistics.
``data_dir`` may be ADEChallengeData2016/ itself or the folder holding it.
"""

from __future__ import annotations

from pathlib import Path

from .datasets import register_dataset
from .seg_folders import IMAGENET_MEAN, IMAGENET_STD, FolderSource, SegDataError, SegFolder, pair_by_stem

__all__ = ["ADE20K_CLASSES", "ADE20K", "read_ade20k"]

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
#: visattn's split names -> the challenge's folder names
SPLITS = {"train": "training", "val": "validation"}


def read_ade20k(root: str | Path, split: str, **kwargs) -> SegFolder:
    """ADE20K's ``split`` (``train`` / ``val``) under ``root`` (ADEChallengeData2016/ or its parent)."""
    root = Path(root)
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016" / "images").is_dir():
        root = root / "ADEChallengeData2016"
    folder = SPLITS.get(split, split)
    image_dir, mask_dir = root / "images" / folder, root / "annotations" / folder
    if not image_dir.is_dir():
        raise SegDataError(f"{image_dir}: folder not found (expected ADEChallengeData2016/images/{folder}/ and "
                           f"annotations/{folder}/)")
    pairs = pair_by_stem(image_dir, mask_dir, what="annotation")
    return SegFolder(pairs, list(ADE20K_CLASSES), reduce_zero_label=True, **kwargs)


@register_dataset("ade20k", task="segmentation", channels=3, classes=ADE20K_CLASSES, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, data_dir="with ADEChallengeData2016/images/ and annotations/")
class ADE20K(FolderSource):
    """ADE20K SceneParsing: 150 classes, 20,210 training and 2,000 validation images; label 0 is ignored."""

    def read(self, root, split):
        return read_ade20k(root, split)
