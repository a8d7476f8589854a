"""Segmentation data for training: in-memory scenes with batch-wise flips, or folders streamed by DataLoader workers.

Both sources give the trainer the same thing: an iterable of ``(images, masks)`` batches (float images
normalised per channel, int64 masks with :data:`IGNORE_INDEX` where a pixel has no label), with ``len`` and
``set_epoch`` like :class:`~visattn.data.loader.BatchLoader`; and a validation iterable of whole images.

Augmentation moves image and mask together (:func:`joint_augment`): a random scale (bilinear for the
image, ``nearest-exact`` for the mask: both sample at pixel centres; plain ``nearest`` would shift the mask
by up to half a source pixel against the image, which the alignment test catches), a random crop (padding
with zeros / the ignore index where the scaled image is smaller than the crop) and a random horizontal
flip, all drawn from one generator per sample, seeded by (seed, epoch, index) so that the result does not
depend on the number of workers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import SegData, SegMeta
from .datasets import dataset_info, list_datasets
from .seg_folders import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, SegDataError, SegFolder

__all__ = ["SEG_DATASETS", "check_crop", "SegData", "SegBatchLoader", "FolderLoader", "SegMeta", "joint_augment",
           "load_segmentation", "segmentation_meta", "IGNORE_INDEX", "SegDataError"]

#: Segmentation data sets in registration order: Fashion-MNIST scenes (made from the real Fashion-MNIST), Pascal
#: VOC, images/ + masks/, Cityscapes, ADE20K (:func:`~.datasets.list_datasets`).
SEG_DATASETS = tuple(list_datasets("segmentation"))


def joint_augment(image: torch.Tensor, mask: torch.Tensor, crop: tuple[int, int], generator: torch.Generator, *,
                  scale: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale, crop to ``crop`` and horizontal flip, the same for the image and its mask.

    Args:
        image: float ``(C, H, W)``.
        mask: int64 ``(H, W)``.
        crop: output ``(h, w)``.
        generator: source of the random choices.
        scale: range of the random scale factor (mmseg's ``ratio_range=(0.5, 2.0)``).
        flip: flip horizontally with probability 1/2.
        ignore_index: mask value of the padding.

    Returns:
        image ``(C, h, w)`` and mask ``(h, w)``.
    """
    lo, hi = scale
    s = lo + (hi - lo) * float(torch.rand((), generator=generator))
    h, w = mask.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) != (h, w):
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=(nh, nw), mode="nearest-exact")[0, 0].long()
    ch, cw = crop
    ph, pw = max(0, ch - nh), max(0, cw - nw)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        mask = F.pad(mask, (0, pw, 0, ph), value=ignore_index)
    top = int(torch.randint(0, image.shape[1] - ch + 1, (), generator=generator))
    left = int(torch.randint(0, image.shape[2] - cw + 1, (), generator=generator))
    image, mask = image[:, top:top + ch, left:left + cw], mask[top:top + ch, left:left + cw]
    if flip and float(torch.rand((), generator=generator)) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    return image.contiguous(), mask.contiguous()


def _shard(n: int, epoch: int, seed: int, shuffle: bool, rank: int, world_size: int, pad: bool = True) -> torch.Tensor:
    """DistributedSampler's contract: a seeded permutation, padded by wrapping (``pad``), every ``world_size``-th item.

    Evaluation shards without padding, so that no image is counted twice.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    if pad:
        per_rank = -(-n // world_size)
        order = torch.cat([order, order[: per_rank * world_size - n]])
    return order[rank::world_size]


class SegBatchLoader:
    """Batches of an in-memory :class:`SegData`; training batches are flipped (image and mask together)."""

    def __init__(self, data: SegData, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                 flip: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        self.data, self.batch_size, self.shuffle, self.augment, self.flip = data, batch_size, shuffle, augment, flip
        self.seed, self.rank, self.world_size, self.drop_last, self.epoch = seed, rank, world_size, drop_last, 0
        self._mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(data.std).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        per_rank = -(-len(self.data) // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        idx = _shard(len(self.data), self.epoch, self.seed, self.shuffle, self.rank, self.world_size)
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)
        for start in range(0, len(idx), self.batch_size):
            chunk = idx[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            images, masks = self.data.images[chunk], self.data.masks[chunk].long()
            if self.augment and self.flip:
                flip = torch.rand(len(chunk), generator=g) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(3), images)
                masks = torch.where(flip[:, None, None], masks.flip(2), masks)
            yield (images.float().div_(255) - self._mean) / self._std, masks


class _Normalise:
    """Sample transform of a folder: normalise, and (training) augment with a per-(seed, epoch, index) generator."""

    def __init__(self, mean, std, crop: tuple[int, int] | None, seed: int, flip: bool = True):
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
        self.crop, self.seed, self.flip, self.epoch = crop, seed, flip, 0

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, index: int):
        x = (image.float().div_(255) - self.mean) / self.std
        if self.crop is None:
            return x, mask
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return joint_augment(x, mask, self.crop, g, flip=self.flip)


class FolderLoader:
    """A :class:`SegFolder` through a torch ``DataLoader`` with ``workers`` processes, sharded over ranks.

    Training (``crop`` given): random scale / crop / flip to ``crop``, batches of ``batch_size``. Evaluation
    (``crop=None``): whole images, one per batch (their sizes differ). ``pad_shards=False`` gives each rank
    ``range(rank, N, world_size)`` with no repeated image (evaluation).
    """

    def __init__(self, folder: SegFolder, mean, std, *, batch_size: int = 1, crop: tuple[int, int] | None = None,
                 shuffle: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 workers: int = 2, flip: bool = True, pad_shards: bool = True):
        self.folder, self.shuffle, self.seed, self.rank, self.world_size = folder, shuffle, seed, rank, world_size
        self.batch_size = batch_size if crop is not None else 1
        self.drop_last, self.workers, self.epoch, self.pad_shards = drop_last, workers, 0, pad_shards
        if crop is not None:
            check_crop(folder, crop)
        self.transform = _Normalise(mean, std, crop, seed, flip)
        folder.transform = self.transform

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.transform.epoch = epoch

    def __len__(self) -> int:
        n = len(self.folder)
        per_rank = -(-n // self.world_size) if self.pad_shards else len(range(self.rank, n, self.world_size))
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        idx = _shard(len(self.folder), self.epoch, self.seed, self.shuffle, self.rank, self.world_size,
                     self.pad_shards).tolist()
        loader = torch.utils.data.DataLoader(self.folder, batch_size=self.batch_size, sampler=idx,
                                             num_workers=self.workers, drop_last=self.drop_last,
                                             persistent_workers=False)
        iterator = iter(loader)
        try:
            yield from iterator
        except ValueError as err:  # a worker's SegDataError comes back with the worker's traceback in its message
            if "\n" not in str(err):
                raise
            raise SegDataError(_worker_message(err)) from None
        finally:  # stop the workers now: a traceback that holds this frame would keep them (and a 5 s join) alive
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def check_crop(folder: SegFolder, crop: tuple[int, int]) -> None:
    """Refuse a training crop larger than the folder's smallest image (it would train on padding).

    Raises:
        ValueError: one line naming the smallest image and the largest crop that fits.
    """
    sizes = folder.image_sizes()
    if not sizes:
        return
    ch, cw = crop
    min_w, min_h = min(w for w, _ in sizes), min(h for _, h in sizes)
    if ch > min_h or cw > min_w:
        i = min(range(len(sizes)), key=lambda k: min(sizes[k][1] - ch, sizes[k][0] - cw))
        w, h = sizes[i]
        raise ValueError(f"crop {ch}x{cw} is larger than the training images (the smallest, "
                         f"{folder.pairs[i][0].name}, is {h}x{w} pixels): the crops would be mostly padding; "
                         f"use a crop of at most {min_h}x{min_w} (--crop-size {min(min_h, min_w)})")


def _worker_message(err: Exception) -> str:
    text = str(err)
    for line in reversed(text.splitlines()):
        if "SegDataError: " in line:
            return line.split("SegDataError: ", 1)[1]
    return text.splitlines()[0] if text else repr(err)


def segmentation_meta(name: str, data_dir: str | Path | None = None, *, scene_size: int = 64,
                      crop_size: int = 512) -> SegMeta:
    """Input channels, classes and training input size of data set ``name``, without reading its images."""
    return dataset_info(name, "segmentation").source().meta(data_dir, scene_size=scene_size, crop_size=crop_size)


def load_segmentation(name: str, data_dir: str | Path | None = None, *, train_limit: int | None = None,
                      val_limit: int | None = None, scene_size: int = 64, scene_seed: int = 0,
                      subset_seed: int | None = 0) -> tuple[SegData | SegFolder, SegData | SegFolder]:
    """Training and validation data of ``name`` (:data:`SEG_DATASETS`).

    Scenes are made in memory (``train_limit`` training scenes, default 6,000; ``val_limit`` test scenes,
    default 1,000): each scene is a random function of its index and ``scene_seed``, so the first N are
    already a random sample. Folders are opened, checked as far as headers allow, and read on demand; a
    limit keeps a random subset drawn from ``subset_seed`` (:func:`~visattn.data.subset.random_subset`; a
    segmentation sample has a mask, not one label, so it is not stratified by class), or the first files
    with ``subset_seed=None``, as runs recorded before did.
    """
    return dataset_info(name, "segmentation").source().load(data_dir, train_limit=train_limit, val_limit=val_limit,
                                                            scene_size=scene_size, scene_seed=scene_seed,
                                                            subset_seed=subset_seed)


def folder_stats(folder: SegFolder) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet's normalisation for RGB folders (the usual choice for photographs); 0.5 / 0.25 for grey."""
    if folder.channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,), (0.25,)


