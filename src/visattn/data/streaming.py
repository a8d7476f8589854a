"""ImageFolder data too large for memory: decoded from disk batch by batch in DataLoader worker processes.

:class:`StreamedImageData` holds the file list instead of the pixels; :class:`StreamingLoader` yields
exactly the batches :class:`~visattn.data.base.BatchLoader` would yield for the same images: the
same order (shuffled per epoch from the seed, each DDP rank its own disjoint shard), the same batch-wise
crop and flip from the same random generator, the same normalisation. Only the decoding moves: worker
processes decode (Pillow, :func:`~visattn.data.image_folder.decode_image`) the images of the next batches
while the model trains on this one, and the augmentation runs on the finished uint8 batch in the main
process. :func:`load_dataset <visattn.data.loader.load_dataset>` picks this path when the decoded images
would exceed a memory budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .base import BatchLoader, ImageData, augment_batch
from .image_folder import decode_image
from .subset import stratified_subset

__all__ = ["StreamedImageData", "StreamingLoader", "folder_statistics", "default_workers"]


@dataclass
class StreamedImageData:
    """Images on disk (``paths``, decoded to ``channels x size x size``), labels, classes and normalisation.

    The file-backed counterpart of :class:`~visattn.data.base.ImageData`: the same ``len``,
    ``subset``, ``in_chans``, ``image_shape``, ``classes``, ``mean`` and ``std``; ``images`` is not held.
    """

    paths: list[Path]
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    channels: int = 3

    #: images are decoded from disk batch by batch (:class:`~visattn.data.base.ImageData` has them in memory)
    in_memory = False

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int | None, seed: int | None = 0) -> StreamedImageData:
        """A class-stratified random ``limit`` of the samples (all when ``limit`` is None, the first if ``seed=None``).

        The same samples as :meth:`ImageData.subset <visattn.data.base.ImageData.subset>` picks.
        """
        if limit is None or limit >= len(self):
            return self
        return self.select(slice(0, limit) if seed is None else stratified_subset(self.labels, limit, seed))

    def select(self, index: slice | torch.Tensor) -> StreamedImageData:
        """The samples ``index`` picks (a slice, e.g. ``slice(rank, None, world_size)``, or int64 indices)."""
        paths = self.paths[index] if isinstance(index, slice) else [self.paths[i] for i in index.tolist()]
        return StreamedImageData(paths, self.labels[index], self.classes, self.mean, self.std, self.size,
                                 self.channels)

    @property
    def in_chans(self) -> int:
        return self.channels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def to_memory(self, workers: int | None = None):
        """Every image decoded into an in-memory :class:`~visattn.data.base.ImageData` (for small sets)."""
        chunks = [torch.arange(s, min(s + 256, len(self))) for s in range(0, len(self), 256)]
        images = [x for x, _ in _batches(self, chunks, workers)]
        return ImageData(torch.cat(images), self.labels, self.classes, self.mean, self.std)

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 ``(C, size, size)``."""
        return decode_image(self.paths[i], self.size, self.channels)


class _Files(Dataset):
    def __init__(self, data: StreamedImageData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.decode(i), self.data.labels[i]


def _stack(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*samples, strict=True)
    return torch.stack(images), torch.stack(labels)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding is Pillow's work; torch threads in workers would only compete


def default_workers() -> int:
    """Decoding processes: one core is left to the training loop, at most 4 (plenty for small images)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def folder_statistics(data: StreamedImageData, *, sample: int = 10_000, batch_size: int = 256,
                      workers: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased, over images and pixels) of the images in ``[0, 1]``.

    Computed from at most ``sample`` images spread evenly over the set (all of them when it is smaller,
    which then equals :func:`~visattn.data.loader.load_dataset`'s in-memory statistics up to rounding).
    """
    n = len(data)
    index = torch.arange(n) if n <= sample else torch.linspace(0, n - 1, sample).round().long()
    chosen = StreamedImageData([data.paths[i] for i in index.tolist()], data.labels[index], data.classes,
                               data.mean, data.std, data.size, data.channels)
    total = torch.zeros(data.channels, dtype=torch.float64)
    squares = torch.zeros(data.channels, dtype=torch.float64)
    for images, _ in _batches(chosen, [torch.arange(s, min(s + batch_size, len(chosen)))
                                       for s in range(0, len(chosen), batch_size)], workers):
        x = images.double().div_(255)
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
    count = len(chosen) * data.size * data.size
    mean = total / count
    var = (squares - count * mean.square()) / max(1, count - 1)
    return tuple(mean.tolist()), tuple(var.clamp_min(0).sqrt().tolist())


def _batches(data: StreamedImageData, chunks, workers: int | None):
    workers = default_workers() if workers is None else workers
    return DataLoader(_Files(data), batch_sampler=chunks, num_workers=workers, collate_fn=_stack,
                      worker_init_fn=_one_thread if workers else None, prefetch_factor=2 if workers else None)


class StreamingLoader(BatchLoader):
    """:class:`~visattn.data.base.BatchLoader` over a :class:`StreamedImageData`: the same batches.

    Args:
        data: the images on disk.
        batch_size: images per batch, as BatchLoader's.
        workers: decoding processes (default :func:`default_workers`; 0 decodes in this process).
        **kwargs: BatchLoader's other keyword arguments (``shuffle``, ``augment``, ``pad``, ``flip``, ``seed``,
            ``rank``, ``world_size``, ``drop_last``).
    """

    def __init__(self, data: StreamedImageData, batch_size: int, *, workers: int | None = None, **kwargs):
        super().__init__(data, batch_size, **kwargs)
        self.workers = workers

    def __iter__(self):
        idx = self._indices()
        chunks = [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        if self.drop_last and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)  # as BatchLoader
        for images, labels in _batches(self.data, chunks, self.workers):
            if self.augment:
                images = augment_batch(images, self.pad, self.flip, g)
            yield (images.float().div_(255) - self._mean) / self._std, labels
