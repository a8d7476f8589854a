"""Classification data by name: :func:`load_dataset` and :func:`data_shape` look the name up in the catalogue.

Images stay uint8 in memory; each batch is cropped (random crop with zero padding), flipped and
normalised as one tensor operation (:class:`~.base.BatchLoader`), so there are no worker processes to
start. An ImageFolder set whose decoded images would not fit a memory budget is streamed from disk instead
(:mod:`.streaming`), with the same batches; :func:`make_loader` picks the loader that fits the data. Each
data set kind is its own file registered with :func:`~.datasets.register_dataset`.
"""

from __future__ import annotations

from pathlib import Path

from .base import BatchLoader, ImageData, augment_batch, check_data_dir
from .datasets import dataset_info, list_datasets
from .streaming import StreamingLoader

__all__ = ["ImageData", "BatchLoader", "load_dataset", "data_shape", "DATASETS", "augment_batch", "make_loader",
           "shard", "check_data_dir", "DEFAULT_MEMORY_BUDGET_MB"]

#: names of the classification data sets, in registration order (:func:`~.datasets.list_datasets`)
DATASETS = tuple(list_datasets("classification"))

#: ImageFolder sets whose decoded uint8 images (train + val) exceed this many MiB are streamed from disk
DEFAULT_MEMORY_BUDGET_MB = 2048


def load_dataset(name: str, data_dir: str | Path | None = None, *, train_limit: int | None = None,
                 val_limit: int | None = None, image_size: int = 32,
                 memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
                 dataset_kwargs: dict | None = None, subset_seed: int | None = 0) -> tuple[ImageData, ImageData]:
    """Train and validation (test split) data for ``name`` in :data:`DATASETS`.

    Normalisation statistics come from the training split (before ``train_limit``). ``data_dir`` is used
    exactly as given (a missing, empty or non-folder path is an error, never a fall-back elsewhere).
    An ImageFolder set whose decoded images would need more than ``memory_budget_mb`` MiB comes back as
    :class:`~visattn.data.streaming.StreamedImageData` (files on disk; :func:`make_loader` streams it).
    ``dataset_kwargs`` are the options of a generated data set (``cluttered-fashion-mnist``: see
    :class:`~visattn.data.cluttered.ClutterSpec`); other data sets take none.

    ``train_limit`` / ``val_limit`` keep a class-stratified random subset drawn from ``subset_seed``
    (:func:`~visattn.data.subset.stratified_subset`): every class in its share, whatever order the files
    are in. ``subset_seed=None`` takes the first samples, as runs recorded before did.
    """
    info = dataset_info(name, "classification")
    if dataset_kwargs and not info.takes_options:
        raise ValueError(f"{name} takes no data set options, got {sorted(dataset_kwargs)}")
    if data_dir is not None:
        check_data_dir(data_dir)
    elif info.data_dir is not None:
        raise ValueError(f"{name} needs --data-dir {info.data_dir}")
    train, val = info.source().load(data_dir, image_size=image_size, memory_budget_mb=memory_budget_mb,
                                    options=dataset_kwargs)
    return train.subset(train_limit, subset_seed), val.subset(val_limit, subset_seed)


def data_shape(name: str, image_size: int = 32, dataset_kwargs: dict | None = None) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the images of data set ``name`` (without loading it)."""
    return dataset_info(name, "classification").source().shape(image_size, dataset_kwargs)


def make_loader(data, batch_size: int, **kwargs) -> BatchLoader:
    """The loader for ``data``: :class:`BatchLoader` in memory, a streaming one for files on disk.

    Args:
        data: :class:`ImageData`, or :class:`~visattn.data.streaming.StreamedImageData`.
        batch_size: images per batch.
        **kwargs: :class:`BatchLoader`'s options (shuffle, augment, pad, flip, seed, rank, world_size,
            drop_last); both loaders give the same batches for the same options.
    """
    if isinstance(data, ImageData):
        return BatchLoader(data, batch_size, **kwargs)
    if hasattr(data, "loader"):  # data that brings its own loader (ImageFiles: real resolution, decoded in workers)
        return data.loader(batch_size, **kwargs)
    return StreamingLoader(data, batch_size, **kwargs)


def shard(data, rank: int, world_size: int):
    """Every ``world_size``-th sample from ``rank`` (evaluation's split over DDP ranks), of either data kind."""
    if world_size == 1:
        return data
    if isinstance(data, ImageData):
        return ImageData(data.images[rank::world_size], data.labels[rank::world_size], data.classes, data.mean,
                         data.std)
    return data.select(slice(rank, None, world_size))
