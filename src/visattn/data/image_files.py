"""An image folder at real resolution: files decoded and transformed in DataLoader worker processes.

:class:`ImageFiles` holds the file list, labels, class names and the preprocessing (input size, mean, std,
crop share); :meth:`ImageFiles.loader` gives the batches the trainer iterates: RandomResizedCrop + flip
when training, resize + centre crop otherwise (:func:`~visattn.data.transforms.image_transform`), each
image decoded with Pillow inside a worker. The order is shuffled per epoch from the seed, each DDP rank
takes its own shard (as :class:`~visattn.data.loader.BatchLoader`), and the random crops are seeded from
the seed and the epoch, so a run repeats with the same number of workers.

A file Pillow cannot read stops the loader with one line naming it (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .subset import stratified_subset
from .transforms import DEFAULT_CROP_PCT, image_transform

__all__ = ["ImageFiles", "ImageFileLoader", "read_image", "load_image_files"]


def read_image(path: str | Path, channels: int = 3):
    """The image at ``path`` as a PIL image in mode ``"L"`` (1 channel) or ``"RGB"``, fully decoded.

    Raises:
        ValueError: the file is missing, truncated or not an image (one line naming it).
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image folders need Pillow: pip install 'visattn[train]'") from None
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L" if channels == 1 else "RGB")
    except (OSError, SyntaxError, ValueError) as err:  # Pillow reports damaged files as any of these
        raise ValueError(f"{path}: not a readable image ({str(err).splitlines()[0] if str(err) else err})") from None


class _Decode(Dataset):
    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, channels: int, transform: Callable[[Any], Any]):
        self.paths, self.labels, self.channels, self.transform = paths, labels, channels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(read_image(self.paths[i], self.channels)), self.labels[i]


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding is Pillow's work; torch threads in workers would only compete


def _worker_error(err: Exception) -> str:
    """The original one-line message of an exception a DataLoader worker raised (not the wrapper's text)."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    last = lines[-1] if lines else str(err)
    return last.split(": ", 1)[1] if last.startswith(f"{type(err).__name__}: ") else last


@dataclass
class ImageFiles:
    """Images on disk with labels, class names and their preprocessing, read at ``img_size``.

    Attributes:
        paths: the image files.
        labels: int64 class indices ``(N,)``.
        classes: class names (label k is ``classes[k]``).
        mean, std: per-channel normalisation (ImageNet's by default, as the published weights expect).
        img_size: side of the network input.
        channels: 3 (RGB) or 1 (grey).
        crop_pct: evaluation centre crop's share of the resized shorter side.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
    """

    paths: list[Path]
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int
    channels: int = 3
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"

    #: files are decoded batch by batch (an in-memory ImageData holds its pixels)
    in_memory = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_chans(self) -> int:
        return self.channels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one network input."""
        return (self.channels, self.img_size, self.img_size)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What a run saves to use its model on new images: size, mean, std, crop share, interpolation."""
        return {"input_size": [self.img_size, self.img_size], "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation, "channels": self.channels}

    def select(self, index: slice | torch.Tensor) -> ImageFiles:
        """The samples ``index`` picks (a slice, or int64 indices)."""
        if isinstance(index, slice):
            return replace(self, paths=self.paths[index], labels=self.labels[index])
        picked = index.tolist()
        return replace(self, paths=[self.paths[i] for i in picked], labels=self.labels[index])

    def subset(self, limit: int | None, seed: int = 0) -> ImageFiles:
        """A class-stratified random ``limit`` of the samples (:func:`~visattn.data.subset.stratified_subset`)."""
        if limit is None or limit >= len(self):
            return self
        return self.select(stratified_subset(self.labels, limit, seed))

    def transform(self, training: bool) -> Callable[[Any], Any]:
        return image_transform(self.img_size, training=training, mean=self.mean, std=self.std,
                               crop_pct=self.crop_pct, interpolation=self.interpolation)

    def loader(self, batch_size: int, *, shuffle: bool = False, augment: bool = False, seed: int = 0, rank: int = 0,
               world_size: int = 1, drop_last: bool = False, workers: int | None = None, **_ignored: Any
               ) -> ImageFileLoader:
        """The batches of this data (``augment``: the training transform).

        The in-memory loaders' options that make no sense here (``pad``, ``flip``: RandomResizedCrop replaces
        them) are ignored.
        """
        return ImageFileLoader(self, batch_size, shuffle=shuffle, training=augment, seed=seed, rank=rank,
                               world_size=world_size, drop_last=drop_last, workers=workers)


class ImageFileLoader:
    """``(images, labels)`` batches of an :class:`ImageFiles`, decoded in worker processes.

    Args:
        data: the files.
        batch_size: images per batch (per process under DDP).
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch, the same on every rank).
        training: RandomResizedCrop + flip; else resize + centre crop.
        seed: order and augmentation.
        rank: this process's shard (every rank gets ``ceil(N / world_size)`` samples).
        world_size: the number of processes sharing each epoch.
        drop_last: drop a last incomplete batch.
        workers: decoding processes (default: all cores but one, at most 8; 0 decodes in this process).
    """

    def __init__(self, data: ImageFiles, batch_size: int, *, shuffle: bool = False, training: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 workers: int | None = None):
        import os

        self.data, self.batch_size, self.shuffle, self.training = data, batch_size, shuffle, training
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.workers = max(1, min(8, (os.cpu_count() or 2) - 1)) if workers is None else workers
        self.epoch = 0
        self._dataset = _Decode(data.paths, data.labels, data.channels, data.transform(training))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        per_rank = -(-n // self.world_size)
        order = torch.cat([order, order[: per_rank * self.world_size - n]])
        return order[self.rank::self.world_size].tolist()

    def __len__(self) -> int:
        per_rank = -(-len(self.data) // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        loader = DataLoader(self._dataset, batch_size=self.batch_size, sampler=self._indices(),
                            drop_last=self.drop_last, num_workers=self.workers,
                            worker_init_fn=_one_thread if self.workers else None,
                            persistent_workers=False, prefetch_factor=4 if self.workers else None,
                            generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank))
        try:
            yield from loader
        except ValueError as err:  # a worker's "Caught ValueError in DataLoader worker ..." back to its one line
            raise ValueError(_worker_error(err)) from None


def load_image_files(root: str | Path, img_size: int, *, channels: int = 3, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, crop_pct: float = DEFAULT_CROP_PCT,
                     interpolation: str = "bilinear") -> tuple[ImageFiles, ImageFiles]:
    """Train and validation :class:`ImageFiles` of ``root/train/<class>/...`` and ``root/val/`` (or ``test/``).

    Args:
        root: the folder.
        img_size: side of the network input.
        channels: 3 (RGB) or 1 (grey).
        mean: per-channel normalisation mean; default ImageNet's (3 channels) or 0.5 (grey).
        std: per-channel normalisation std; default ImageNet's (3 channels) or 0.5 (grey).
        crop_pct: evaluation centre crop's share, as :func:`~visattn.data.transforms.image_transform`.
        interpolation: ``"bilinear"`` or ``"bicubic"``.

    Raises:
        FileNotFoundError: no train/ and val/ (or test/) class folders, or no images in them.
        ValueError: train and val have different classes, or a bad size / normalisation.
    """
    from .image_folder import scan_image_folder
    from .transforms import IMAGENET_MEAN, IMAGENET_STD

    root = Path(root)
    val_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or val_dir is None:
        raise FileNotFoundError(f"{root}: expected train/<class>/... and val/<class>/... (or test/)")
    if channels not in (1, 3):
        raise ValueError(f"{root}: channels must be 1 or 3, got {channels}")
    if mean is None or std is None:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"{root}: mean and std need {channels} value(s), got {list(mean)} and {list(std)}")
    image_transform(img_size, training=False, mean=mean, std=std, crop_pct=crop_pct)  # bad options fail here
    tr_paths, tr_y, classes = scan_image_folder(root / "train")
    va_paths, va_y, val_classes = scan_image_folder(val_dir)
    if val_classes != classes:
        raise ValueError(f"{root}: train and {val_dir.name} have different classes")
    common = {"classes": classes, "mean": tuple(mean), "std": tuple(std), "img_size": img_size,
              "channels": channels, "crop_pct": crop_pct, "interpolation": interpolation}
    return ImageFiles(tr_paths, tr_y, **common), ImageFiles(va_paths, va_y, **common)
