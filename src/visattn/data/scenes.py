"""Fashion-MNIST scenes: a segmentation data set made from the real Fashion-MNIST images.

Each scene is a ``size`` x ``size`` grey canvas (64 by default) holding 2-4 Fashion-MNIST items, each scaled
to a random size and placed at a random position, later items occluding earlier ones. The label of a pixel
is the class of the item visible there (1-10, in Fashion-MNIST's class order) where that item's pixel is
foreground (grey value > 24 after resizing), and 0 (``background``) elsewhere. Training scenes use only
the training split's images, test scenes only the test split's.

Why long-range context matters here. The items are drawn large, 0.45-0.9 of the canvas (29-57 px at 64),
up to twice their 28 px source, so a 7 x 7 or 15 x 15 neighbourhood sees a piece of smooth cloth or an
edge, and the pieces of the upper-body classes look alike locally: a sleeve of a shirt, a pullover and a
coat, the body of a T-shirt and a dress. Which one it is shows only in the item's overall shape (sleeve
length, collar, hem), which lies 15-50 px away. Occlusion adds the other long-range question: which item a
pixel belongs to, decided by the visible outline of the front item. Each item's brightness is scaled by a
random factor in [0.6, 1.0], so grey level is no shortcut to the class.

Determinism. Every random choice of scene ``i`` (number of items, which source image each item is, its
size, position and brightness) is a counter-based hash of ``(seed, split, i, choice)`` (a 32-bit integer
hash, see :func:`_uniform`), so a scene does not depend on which batch it is made in, on the number of
scenes asked for, or on the torch random state. Scenes are rendered a whole batch at a time with one
``affine_grid`` / ``grid_sample`` call per item slot.

Class balance (seed 0, 64 x 64, the first 2,000 training scenes, :func:`class_balance`): background 53.3%
of the pixels; the ten item classes 2.7-6.5% each (pullover 6.5, shirt 5.8, coat 5.6, T-shirt 5.5, bag 5.4,
dress 4.4, ankle boot 4.4, trouser 3.5, sneaker 2.8, sandal 2.7: the footwear is small and thin). mIoU
weighs every class equally, so the small footwear classes count as much as the large tops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import SegData, SegMeta
from .datasets import SegmentationSource, register_dataset
from .fashion_mnist import CLASSES, load_fashion_mnist

__all__ = ["SCENE_CLASSES", "FashionScenes", "SceneConfig", "make_scenes", "render_scenes", "class_balance"]

#: Class names of the scene labels: index 0 is the background, 1..10 Fashion-MNIST's classes.
SCENE_CLASSES = ("background", *CLASSES)
_SPLITS = {"train": 1, "test": 2}
_M32 = 0xFFFFFFFF
FOREGROUND = 24  # grey level above which a resized item pixel is the item's


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn.

    Args:
        size: canvas height and width.
        min_items: fewest items per scene.
        max_items: most items per scene (inclusive).
        min_scale: smallest item side as a fraction of the canvas side.
        max_scale: largest item side as a fraction of the canvas side.
        seed: the data set's seed (independent of the training seed).
    """

    size: int = 64
    min_items: int = 2
    max_items: int = 4
    min_scale: float = 0.45
    max_scale: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"scenes: size must be >= 8, got {self.size}")
        if not 1 <= self.min_items <= self.max_items:
            raise ValueError(f"scenes: need 1 <= min_items <= max_items, got {self.min_items}, {self.max_items}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"scenes: need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing hash on int64 tensors (multiplier < 2^27, so nothing overflows)."""
    x = x & _M32
    for _ in range(2):
        x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def _uniform(seed: int, split: str, index: torch.Tensor, choice: int) -> torch.Tensor:
    """Uniform [0, 1) numbers, one per scene index, a pure function of (seed, split, index, choice)."""
    key = _hash32(torch.tensor(seed * 8 + _SPLITS[split], dtype=torch.int64))
    h = _hash32(_hash32(index.to(torch.int64) * 64 + choice) ^ key)
    return h.to(torch.float64) / 2.0**32


def render_scenes(items: torch.Tensor, item_labels: torch.Tensor, indices: torch.Tensor, split: str,
                  config: SceneConfig = SceneConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw scenes ``indices`` of ``split`` from the split's item images (a whole batch at once).

    Args:
        items: uint8 source images ``(N, 28, 28)`` of the split.
        item_labels: their classes ``(N,)`` in 0..9.
        indices: scene numbers ``(B,)``.
        split: ``"train"`` or ``"test"`` (part of every scene's random key).
        config: the drawing settings.

    Returns:
        uint8 images ``(B, 1, S, S)`` and uint8 labels ``(B, S, S)`` (0 background, 1..10 classes).
    """
    b, s, n = len(indices), config.size, len(items)
    canvas = torch.zeros(b, 1, s, s)
    labels = torch.zeros(b, s, s, dtype=torch.uint8)
    span = config.max_items - config.min_items + 1
    count = config.min_items + (_uniform(config.seed, split, indices, 0) * span).long().clamp(max=span - 1)
    src = items.float().unsqueeze(1)  # [N, 1, 28, 28]
    for slot in range(config.max_items):
        base = 1 + 5 * slot
        which = (_uniform(config.seed, split, indices, base) * n).long().clamp(max=n - 1)
        scale = config.min_scale + (config.max_scale - config.min_scale) * _uniform(config.seed, split, indices,
                                                                                  base + 1)
        # the item's centre, in [-1, 1] canvas coordinates; up to a quarter of an item may leave the canvas
        room = (1 - scale / 2).clamp(min=0)
        cx = (2 * _uniform(config.seed, split, indices, base + 2) - 1) * room
        cy = (2 * _uniform(config.seed, split, indices, base + 3) - 1) * room
        gain = 0.6 + 0.4 * _uniform(config.seed, split, indices, base + 4)
        # canvas coordinates -> item coordinates: x_item = (x_canvas - c) / scale
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, 0, 2], theta[:, 1, 2] = -cx / scale, -cy / scale
        grid = F.affine_grid(theta.float(), [b, 1, s, s], align_corners=False)
        drawn = F.grid_sample(src[which], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        present = (slot < count)[:, None, None, None]
        fg = (drawn > FOREGROUND) & present  # [B, 1, S, S]
        canvas = torch.where(fg, drawn * gain.float()[:, None, None, None], canvas)
        labels = torch.where(fg[:, 0], (item_labels[which] + 1).to(torch.uint8)[:, None, None], labels)
    return canvas.round().clamp(0, 255).to(torch.uint8), labels


def make_scenes(split: str, count: int, config: SceneConfig = SceneConfig(), data_dir=None, *,
                batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` scenes of ``split`` from the real Fashion-MNIST (found as :mod:`.fashion_mnist` finds it).

    Returns:
        uint8 images ``(count, 1, S, S)`` and uint8 labels ``(count, S, S)``.
    """
    if split not in _SPLITS:
        raise ValueError(f"scenes: split must be 'train' or 'test', got {split!r}")
    if count < 1:
        raise ValueError(f"scenes: count must be >= 1, got {count}")
    items, item_labels = load_fashion_mnist(split, data_dir)
    images, labels = [], []
    for start in range(0, count, batch):
        idx = torch.arange(start, min(count, start + batch))
        x, y = render_scenes(items, item_labels, idx, split, config)
        images.append(x)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


def class_balance(labels: torch.Tensor, num_classes: int = len(SCENE_CLASSES)) -> list[float]:
    """Fraction of pixels of each class in ``labels``."""
    counts = torch.bincount(labels.flatten().long(), minlength=num_classes).double()
    return (counts / counts.sum()).tolist()


def scene_data(split: str, count: int, size: int, data_dir, seed: int, mean=None, std=None) -> SegData:
    """``count`` scenes of ``split`` in memory, normalised with ``mean`` / ``std`` (default: their own statistics)."""
    images, masks = make_scenes(split, count, SceneConfig(size=size, seed=seed), data_dir)
    if mean is None:
        x = images.float().div_(255)
        mean, std = (x.mean().item(),), (x.std().item(),)
    return SegData(images, masks, list(SCENE_CLASSES), mean, std)


@register_dataset("fashion-scenes", task="segmentation", channels=1, classes=SCENE_CLASSES)
class FashionScenes(SegmentationSource):
    """Fashion-MNIST scenes: real Fashion-MNIST items placed on a grey canvas, each pixel labelled with its item.

    Made in memory, deterministic in (split, index, seed): ``train_limit`` training scenes (default 6,000) and
    ``val_limit`` test scenes (default 1,000) of ``scene_size`` pixels, normalised with the training scenes'
    statistics.
    """

    def meta(self, data_dir, *, scene_size, crop_size):
        return SegMeta(1, list(SCENE_CLASSES), (scene_size, scene_size))

    def load(self, data_dir, *, train_limit, val_limit, scene_size, scene_seed, subset_seed):
        train = scene_data("train", train_limit or 6000, scene_size, data_dir, scene_seed)
        val = scene_data("test", val_limit or 1000, scene_size, data_dir, scene_seed, train.mean, train.std)
        return train, val
