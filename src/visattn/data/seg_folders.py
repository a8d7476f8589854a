"""Segmentation folders read from disk one image at a time: Pascal VOC's layout and a generic images/ + masks/.

Pascal VOC 2012 (``VOCdevkit/VOC2012`` or any folder laid out the same way)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png                  palette PNGs: the pixel's palette index is its class
    ImageSets/Segmentation/{train,val}.txt      one <id> per line

21 classes (background + 20), 255 = ignore (VOC's object borders). A mask may also be an RGB PNG drawn in
VOC's colour map; it is mapped back to classes.

Generic layout (mmsegmentation's ``img_dir`` / ``ann_dir`` with plainer names)::

    classes.txt                 one class name per line (line k is class k)
    images/{train,val}/<name>.<jpg|png|...>
    masks/{train,val}/<name>.png   single-channel (L or P) PNGs holding class indices, 255 = ignore

Nothing is loaded into memory up front: :class:`SegFolder` is a map-style torch ``Dataset`` that opens
one image and its mask per item, so a torch ``DataLoader`` with worker processes streams a data set of
any size. What can be checked cheaply is checked when the data set is made (split file not empty, every
image has a mask, image and mask sizes agree: PIL reads only the headers); a mask's values are checked
when it is read (labels outside ``[0, num_classes)`` other than the ignore index, colours outside the
palette). Every problem raises :class:`SegDataError`, one line naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .base import SegMeta
from .datasets import SegmentationSource, register_dataset
from .subset import random_subset

__all__ = ["SegDataError", "SegFolder", "FolderSource", "PascalVOC", "SegmentationFolder", "IMAGENET_MEAN",
           "IMAGENET_STD", "voc_colormap", "VOC_CLASSES", "read_voc", "read_generic",
           "IGNORE_INDEX"]

IGNORE_INDEX = 255
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class SegDataError(ValueError):
    """A segmentation data file is missing, unreadable or inconsistent (the message names it)."""


def voc_colormap(n: int = 256) -> torch.Tensor:
    """Pascal VOC's colour map, ``(n, 3)`` uint8: class k's colour spreads k's bits over R, G, B (MSB first)."""
    cmap = torch.zeros(n, 3, dtype=torch.uint8)
    for k in range(n):
        r = g = b = 0
        c = k
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[k] = torch.tensor([r, g, b], dtype=torch.uint8)
    return cmap


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("segmentation folders need Pillow: pip install pillow") from None
    return Image


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with _pil().open(path) as img:
            return img.size
    except OSError as err:
        raise SegDataError(f"{path}: not a readable image ({err})") from None


def _read_image(path: Path, channels: int) -> torch.Tensor:
    """uint8 ``(C, H, W)``."""
    try:
        with _pil().open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            w, h = img.size
            raw = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except OSError as err:
        raise SegDataError(f"{path}: not a readable image ({err})") from None
    return raw.view(h, w, channels).permute(2, 0, 1).contiguous()


def _read_mask(path: Path, num_classes: int, palette: torch.Tensor | None,
               reduce_zero_label: bool = False) -> torch.Tensor:
    """int64 ``(H, W)`` class indices, checked: values in [0, K) or the ignore index.

    ``reduce_zero_label``: the file's 0 means "no label" and class k is stored as k + 1 (ADE20K): 0 becomes
    the ignore index and every other value drops by one, before the check.
    """
    try:
        with _pil().open(path) as img:
            mode = img.mode
            w, h = img.size
            if mode == "P":
                pal = img.getpalette() or []
                raw = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(h, w)
            elif mode == "L":
                raw = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(h, w)
            elif mode in ("I", "I;16"):  # 16/32-bit grey: labels above 255 are reported, not wrapped
                raw = torch.tensor(list(img.getdata()), dtype=torch.int64).view(h, w)
            elif mode in ("RGB", "RGBA") and palette is not None:
                raw = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8).view(h, w, 3)
            else:
                raise SegDataError(f"{path}: mask mode {mode!r} is not supported (expected a palette or grey PNG"
                                   + (" or an RGB PNG in the data set's colour map)" if palette is not None else ")"))
    except OSError as err:
        raise SegDataError(f"{path}: not a readable mask ({err})") from None
    if raw.dim() == 3:  # RGB in the colour map -> classes
        codes = (raw[..., 0].long() << 16) | (raw[..., 1].long() << 8) | raw[..., 2].long()
        known = (palette[:, 0].long() << 16) | (palette[:, 1].long() << 8) | palette[:, 2].long()
        keep = torch.cat([torch.arange(num_classes), torch.tensor([IGNORE_INDEX])])
        table = {int(known[k]): int(k) for k in keep}
        found = codes.unique()
        unknown = [int(c) for c in found if int(c) not in table]
        if unknown:
            c = unknown[0]
            raise SegDataError(f"{path}: colour ({c >> 16}, {(c >> 8) & 255}, {c & 255}) is not in the colour map "
                               f"({len(unknown)} unknown colour(s))")
        lut = torch.full((int(found.max()) + 1,), IGNORE_INDEX, dtype=torch.int64)
        for c in found.tolist():
            lut[c] = table[c]
        return lut[codes]
    mask = raw.long()
    if reduce_zero_label:
        mask = torch.where(mask == 0, IGNORE_INDEX, mask - 1)
        mask = torch.where(mask == IGNORE_INDEX - 1, IGNORE_INDEX, mask)  # the file's 255 stays "ignore"
    used = mask.unique()
    bad = used[(used >= num_classes) & (used != IGNORE_INDEX)]
    if len(bad):
        raise SegDataError(f"{path}: label {int(bad[0])} is outside [0, {num_classes}) and not the ignore index "
                           f"{IGNORE_INDEX}")
    if mode == "P" and palette is not None and pal:
        for k in used.tolist():
            colour = tuple(pal[3 * k:3 * k + 3])
            if len(colour) == 3 and colour != tuple(palette[k].tolist()):
                raise SegDataError(f"{path}: palette colour {colour} of index {k} is not the colour map's "
                                   f"{tuple(palette[k].tolist())} (unknown colour)")
    return mask


class SegFolder(torch.utils.data.Dataset):
    """Image / mask pairs read from disk on demand; ``transform(image, mask, index)`` makes the sample.

    Args:
        pairs: ``(image path, mask path)`` per sample.
        classes: class names (``len(classes)`` classes).
        channels: 3 (RGB) or 1 (grey).
        palette: colour map for RGB or palette masks (VOC's), or ``None`` (masks hold indices).
        transform: ``(uint8 image (C, H, W), int64 mask (H, W), index) -> sample``; identity by default.
        check_sizes: compare every image's and mask's size now (header reads only); :attr:`sizes` keeps them.
        reduce_zero_label: the masks store class k as k + 1 and 0 for "no label" (ADE20K's convention).

    Attributes:
        sizes: ``(width, height)`` of every image when ``check_sizes``, else ``None``.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], classes: list[str], *, channels: int = 3,
                 palette: torch.Tensor | None = None, transform: Callable | None = None, check_sizes: bool = True,
                 reduce_zero_label: bool = False):
        self.pairs, self.classes, self.channels, self.palette = pairs, list(classes), channels, palette
        self.transform, self.reduce_zero_label = transform, reduce_zero_label
        self.sizes: list[tuple[int, int]] | None = None
        if check_sizes:
            self.sizes = []
            for image, mask in pairs:
                si, sm = _image_size(image), _image_size(mask)
                if si != sm:
                    raise SegDataError(f"{mask}: mask size {sm[0]}x{sm[1]} differs from its image {image.name} "
                                       f"({si[0]}x{si[1]})")
                self.sizes.append(si)

    def keep(self, indices: list[int] | range) -> None:
        """Keep only the samples at ``indices`` (a subset for ``--train-limit`` / ``--val-limit``)."""
        self.pairs = [self.pairs[i] for i in indices]
        if self.sizes is not None:
            self.sizes = [self.sizes[i] for i in indices]

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(width, height)`` of every image (from :attr:`sizes`, or read from the headers now)."""
        return list(self.sizes) if self.sizes is not None else [_image_size(image) for image, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 image ``(C, H, W)`` and int64 mask ``(H, W)`` of sample ``index``, checked."""
        image_path, mask_path = self.pairs[index]
        image = _read_image(image_path, self.channels)
        mask = _read_mask(mask_path, self.num_classes, self.palette, self.reduce_zero_label)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise SegDataError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                               f"{image_path.name} ({image.shape[2]}x{image.shape[1]})")
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self.read(index)
        return self.transform(image, mask, index) if self.transform is not None else (image, mask)


def _split_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise SegDataError(f"{path}: split file not found")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise SegDataError(f"{path}: split file is empty")
    return ids


def read_voc(root: str | Path, split: str, **kwargs) -> SegFolder:
    """Pascal VOC's segmentation ``split`` (``train`` / ``val`` / ``trainval``) under ``root``."""
    root = Path(root)
    if not (root / "JPEGImages").is_dir() and (root / "VOC2012" / "JPEGImages").is_dir():
        root = root / "VOC2012"
    ids = _split_ids(root / "ImageSets" / "Segmentation" / f"{split}.txt")
    pairs = []
    for i in ids:
        image, mask = root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png"
        if not image.is_file():
            raise SegDataError(f"{image}: image listed in {split}.txt not found")
        if not mask.is_file():
            raise SegDataError(f"{mask}: no mask for image {image.name}")
        pairs.append((image, mask))
    return SegFolder(pairs, list(VOC_CLASSES), palette=voc_colormap(), **kwargs)


def read_generic(root: str | Path, split: str, **kwargs) -> SegFolder:
    """``root/images/<split>/*`` with ``root/masks/<split>/<same stem>.png`` and ``root/classes.txt``."""
    root = Path(root)
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise SegDataError(f"{classes_file}: not found (one class name per line; line k is class k)")
    classes = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    if not classes:
        raise SegDataError(f"{classes_file}: no class names")
    image_dir, mask_dir = root / "images" / split, root / "masks" / split
    if not image_dir.is_dir():
        raise SegDataError(f"{image_dir}: folder not found (expected images/{split}/ and masks/{split}/)")
    return SegFolder(pair_by_stem(image_dir, mask_dir), classes, **kwargs)


def pair_by_stem(image_dir: Path, mask_dir: Path, what: str = "mask") -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs of every image in ``image_dir`` and the PNG of the same stem in ``mask_dir``.

    Raises:
        SegDataError: no image in ``image_dir``, or an image without its ``what`` (named in one line).
    """
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SegDataError(f"{image_dir}: no images")
    pairs = []
    for image in images:
        mask = mask_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise SegDataError(f"{mask}: no {what} for image {image.name}")
        pairs.append((image, mask))
    return pairs


class FolderSource(SegmentationSource):
    """A segmentation data set on disk: :meth:`read` opens one split as a :class:`SegFolder`."""

    #: the training and the validation split's names
    splits = ("train", "val")

    def read(self, root: str | Path, split: str) -> SegFolder:
        """Split ``split`` under ``root``; each layout defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define read(root, split)")

    def load(self, data_dir, *, train_limit, val_limit, scene_size, scene_seed, subset_seed):
        if data_dir is None:
            raise ValueError(f"{self.info.key} needs --data-dir" + (f" {self.info.data_dir}" if self.info.data_dir
                                                                    else ""))
        train, val = self.read(data_dir, self.splits[0]), self.read(data_dir, self.splits[1])
        for folder, limit in ((train, train_limit), (val, val_limit)):
            if limit:
                n = len(folder.pairs)
                keep = range(min(limit, n)) if subset_seed is None else random_subset(n, limit, subset_seed).tolist()
                folder.keep(keep)
        return train, val


@register_dataset("voc", task="segmentation", channels=3, classes=VOC_CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD)
class PascalVOC(FolderSource):
    """Pascal VOC 2012 segmentation: JPEGImages/, SegmentationClass/ palette PNGs, ImageSets/Segmentation/*.txt."""

    def read(self, root, split):
        return read_voc(root, split)


@register_dataset("seg-folder", task="segmentation", channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  data_dir="with classes.txt, images/<split>/ and masks/<split>/")
class SegmentationFolder(FolderSource):
    """Your own images and masks: classes.txt, images/{train,val}/ and masks/{train,val}/ with class-index PNGs."""

    def meta(self, data_dir, *, scene_size, crop_size):
        if data_dir is None:
            raise ValueError(f"seg-folder needs --data-dir {self.info.data_dir}")
        path = Path(data_dir) / "classes.txt"
        if not path.is_file():
            raise SegDataError(f"{path}: not found (one class name per line; line k is class k)")
        return SegMeta(3, [ln.strip() for ln in path.read_text().splitlines() if ln.strip()], (crop_size, crop_size))

    def read(self, root, split):
        return read_generic(root, split)
