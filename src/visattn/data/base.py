"""The data containers and the in-memory batch loader every data set kind builds on.

:class:`ImageData` (classification) and :class:`SegData` (segmentation) hold uint8 images in memory;
:class:`BatchLoader` cuts them into normalised float batches, cropped and flipped batch-wise by
:func:`augment_batch`, with no worker processes. :class:`SegMeta` is what a model needs to know about a
segmentation data set before any image is read. The dispatchers (:mod:`.loader`, :mod:`.segmentation`)
and the file-backed loaders (:mod:`.streaming`) import from here, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .subset import stratified_subset

__all__ = ["ImageData", "SegData", "SegMeta", "BatchLoader", "augment_batch", "image_stats", "check_data_dir"]


@dataclass
class ImageData:
    """uint8 images ``(N, C, H, W)``, int64 labels, class names and per-channel normalisation.

    ``images`` is a tensor, or a :class:`~visattn.data.cluttered.ClutteredImages` that renders the batches
    asked for (index tensors give uint8 batches, slices give views).
    """

    images: torch.Tensor | Any  # or a ClutteredImages, which indexes like a uint8 tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int | None, seed: int | None = 0) -> ImageData:
        """A class-stratified random ``limit`` of the samples, drawn from ``seed`` (all when ``limit`` is None).

        ``seed=None`` takes the first ``limit`` samples instead: what runs recorded before subsets were
        stratified computed (their config has no ``subset_seed``).
        """
        if limit is None or limit >= len(self):
            return self
        if seed is None:
            return ImageData(self.images[:limit], self.labels[:limit], self.classes, self.mean, self.std)
        index = stratified_subset(self.labels, limit, seed)
        # a ClutteredImages gives a lazy view (nothing rendered); a tensor its rows
        images = self.images[index] if isinstance(self.images, torch.Tensor) else self.images.select(index)
        return ImageData(images, self.labels[index], self.classes, self.mean, self.std)

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])


def image_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)`` scaled to ``[0, 1]``."""
    x = images.float().div_(255)
    return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())


def check_data_dir(data_dir: str | Path, what: str = "--data-dir") -> Path:
    """``data_dir`` as given, if it is a folder with something in it; ``FileNotFoundError`` otherwise."""
    path = Path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{what} {data_dir}: no such folder")
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {data_dir}: is a file, not a folder")
    if not any(path.iterdir()):
        raise FileNotFoundError(f"{what} {data_dir}: the folder is empty")
    return path


@dataclass
class SegMeta:
    """What a model needs to know before any data is read."""

    in_chans: int
    classes: list[str]
    input_size: tuple[int, int]  # the training crop (the scene size for scenes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class SegData:
    """In-memory uint8 images ``(N, C, H, W)`` and uint8 masks ``(N, H, W)``, with class names and normalisation."""

    images: torch.Tensor
    masks: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.masks)


def augment_batch(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with ``pad`` zero padding and random horizontal flip, per image, on a uint8 batch."""
    b, c, h, w = images.shape
    if pad > 0:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # [B, C, H+2p, W+2p]
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        wp = w + 2 * pad
        window = (torch.arange(h)[:, None] * wp + torch.arange(w)).view(1, h * w)  # offsets of an H x W crop
        index = ((dy * wp + dx)[:, None] + window)[:, None, :].expand(b, c, h * w)  # [B, C, HW]
        images = padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(3), images)
    return images


class BatchLoader:
    """Iterate over ``(images, labels)`` batches of an :class:`ImageData`, normalised to float.

    Args:
        data: the data.
        batch_size: images per batch (per process under DDP).
        shuffle: reshuffle every epoch (seeded by ``seed`` and the epoch, the same on every rank).
        augment: random crop with ``pad`` and horizontal flip.
        pad: the random crop's padding, in pixels.
        flip: random horizontal flips (with ``augment``).
        seed: the shuffling and augmentation seed.
        rank: this process's shard of each epoch (DistributedSampler's contract: every rank gets
            ``ceil(N / world_size)`` samples, padding by wrapping around).
        world_size: the number of processes sharing each epoch.
        drop_last: drop a last incomplete batch (training).
    """

    def __init__(self, data: ImageData, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                 pad: int = 4, flip: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        self.data, self.batch_size, self.shuffle, self.augment = data, batch_size, shuffle, augment
        self.pad, self.flip, self.seed, self.rank, self.world_size = pad, flip, seed, rank, world_size
        self.drop_last = drop_last
        self.epoch = 0
        self._mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(data.std).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        per_rank = -(-n // self.world_size)
        order = torch.cat([order, order[: per_rank * self.world_size - n]])
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        per_rank = -(-len(self.data) // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)
        for start in range(0, len(idx), self.batch_size):
            chunk = idx[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            images = self.data.images[chunk]
            if self.augment:
                images = augment_batch(images, self.pad, self.flip, g)
            x = (images.float().div_(255) - self._mean) / self._std
            yield x, self.data.labels[chunk]
