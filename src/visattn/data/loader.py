"""In-memory image data with batch-wise augmentation: fast enough that loading never limits 2 CPU cores.

Images stay uint8 in memory; each batch is cropped (random crop with zero padding), flipped and
normalised as one tensor operation, so there are no worker processes to start. An ImageFolder set whose
decoded images would not fit a memory budget is streamed from disk instead (:mod:`.streaming`), with
the same batches; :func:`make_loader` picks the loader that fits the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .cifar import load_cifar
from .cluttered import ClutteredImages, ClutterSpec
from .fashion_mnist import CLASSES as FASHION_CLASSES
from .fashion_mnist import load_fashion_mnist
from .image_folder import decode_image, scan_image_folder
from .subset import stratified_subset

__all__ = ["ImageData", "BatchLoader", "load_dataset", "data_shape", "DATASETS", "augment_batch", "make_loader",
           "shard", "check_data_dir", "DEFAULT_MEMORY_BUDGET_MB"]

DATASETS = ("fashion-mnist", "cluttered-fashion-mnist", "cifar10", "cifar100", "image-folder")
#: images rendered to estimate the normalisation of a generated data set
_STATS_SAMPLE = 2048

#: ImageFolder sets whose decoded uint8 images (train + val) exceed this many MiB are streamed from disk
DEFAULT_MEMORY_BUDGET_MB = 2048


@dataclass
class ImageData:
    """uint8 images ``(N, C, H, W)``, int64 labels, class names and per-channel normalisation.

    ``images`` is a tensor, or a :class:`~visattn.data.cluttered.ClutteredImages` that renders the batches
    asked for (index tensors give uint8 batches, slices give views).
    """

    images: torch.Tensor | ClutteredImages
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
        images = self.images.select(index) if isinstance(self.images, ClutteredImages) else self.images[index]
        return ImageData(images, self.labels[index], self.classes, self.mean, self.std)

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


def _image_folder(root: Path, image_size: int, memory_budget_mb: int):
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
        mean, std = _stats(tr_x)
        return ImageData(tr_x, tr_y, classes, mean, std), ImageData(te_x, te_y, classes, mean, std)
    from .streaming import StreamedImageData, folder_statistics

    train = StreamedImageData(tr_paths, tr_y, classes, (0.0,) * 3, (1.0,) * 3, image_size)
    mean, std = folder_statistics(train)
    train.mean, train.std = mean, std
    return train, StreamedImageData(te_paths, te_y, classes, mean, std, image_size)


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
    if dataset_kwargs and name != "cluttered-fashion-mnist":
        raise ValueError(f"{name} takes no data set options, got {sorted(dataset_kwargs)}")
    if data_dir is not None:
        check_data_dir(data_dir)
    if name == "cluttered-fashion-mnist":
        return _load_cluttered(data_dir, train_limit, val_limit, dataset_kwargs, subset_seed)
    if name == "image-folder":
        if data_dir is None:
            raise ValueError("image-folder needs --data-dir with train/ and val/ (or test/) class folders")
        train, val = _image_folder(Path(data_dir), image_size, memory_budget_mb)
        return train.subset(train_limit, subset_seed), val.subset(val_limit, subset_seed)
    if name == "fashion-mnist":
        tr_x, tr_y = load_fashion_mnist("train", data_dir)
        te_x, te_y = load_fashion_mnist("test", data_dir)
        tr_x, te_x, classes = tr_x.unsqueeze(1), te_x.unsqueeze(1), list(FASHION_CLASSES)
    elif name in ("cifar10", "cifar100"):
        if data_dir is None:
            raise ValueError(f"{name} needs --data-dir pointing at the extracted python-version folder")
        tr_x, tr_y, classes = load_cifar(name, data_dir, "train")
        te_x, te_y, _ = load_cifar(name, data_dir, "test")
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    mean, std = _stats(tr_x)
    train = ImageData(tr_x, tr_y, classes, mean, std).subset(train_limit, subset_seed)
    val = ImageData(te_x, te_y, classes, mean, std).subset(val_limit, subset_seed)
    return train, val


def _load_cluttered(data_dir, train_limit, val_limit, options, subset_seed) -> tuple[ImageData, ImageData]:
    spec = ClutterSpec.from_options(options)
    tr_src, tr_y = load_fashion_mnist("train", data_dir)
    te_src, te_y = load_fashion_mnist("test", data_dir)
    tr_x, te_x = ClutteredImages(tr_src, spec, "train"), ClutteredImages(te_src, spec, "test")
    mean, std = _stats(tr_x[torch.arange(min(len(tr_x), _STATS_SAMPLE))])
    classes = list(FASHION_CLASSES)
    return (ImageData(tr_x, tr_y, classes, mean, std).subset(train_limit, subset_seed),
            ImageData(te_x, te_y, classes, mean, std).subset(val_limit, subset_seed))


def data_shape(name: str, image_size: int = 32, dataset_kwargs: dict | None = None) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the images of data set ``name`` (without loading it)."""
    if name == "fashion-mnist":
        return 1, 28, 28
    if name == "cluttered-fashion-mnist":
        canvas = ClutterSpec.from_options(dataset_kwargs).canvas
        return 1, canvas, canvas
    return 3, (32 if name.startswith("cifar") else image_size), (32 if name.startswith("cifar") else image_size)


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
    from .streaming import StreamingLoader

    return StreamingLoader(data, batch_size, **kwargs)


def shard(data, rank: int, world_size: int):
    """Every ``world_size``-th sample from ``rank`` (evaluation's split over DDP ranks), of either data kind."""
    if world_size == 1:
        return data
    if isinstance(data, ImageData):
        return ImageData(data.images[rank::world_size], data.labels[rank::world_size], data.classes, data.mean,
                         data.std)
    return data.select(slice(rank, None, world_size))
