"""The catalogue of data sets: one class per data set kind, registered with ``@register_dataset``.

A data set kind is one file holding a :class:`ClassificationSource` or :class:`SegmentationSource` subclass
with one decorator that states its facts (task, channels, class names, normalisation)::

    @register_dataset("cifar10", task="classification", channels=3, classes=CIFAR10_CLASSES, size=32,
                      data_dir="the extracted python-version folder")
    class Cifar10(ClassificationSource):
        def load(self, data_dir, *, image_size, memory_budget_mb, options):
            ...  # -> (train ImageData, val ImageData)

:func:`~visattn.data.loader.load_dataset` / :func:`~visattn.data.loader.data_shape` (classification) and
:func:`~visattn.data.segmentation.load_segmentation` / :func:`~visattn.data.segmentation.segmentation_meta`
look the name up here; :func:`list_datasets` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalogue import Catalogue, closest
from .base import ImageData, SegMeta

__all__ = ["DatasetInfo", "ClassificationSource", "SegmentationSource", "CATALOGUE", "TASKS", "register_dataset",
           "dataset_info", "list_datasets"]

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one registered data set.

    Attributes:
        key: its name (``"cifar10"``).
        cls: the :class:`ClassificationSource` / :class:`SegmentationSource` subclass that reads it.
        task: ``"classification"`` or ``"segmentation"``.
        channels: image channels.
        classes: class names (index k is class k), or ``None`` where they come from the data (folders).
        mean, std: per-channel normalisation, or ``None`` where it is computed from the training split.
        size: the images' fixed side in pixels, or ``None`` where they are resized (classification) or keep
            their own sizes (segmentation folders).
        data_dir: what ``data_dir`` must hold when the data set cannot be found without one, else ``None``.
        takes_options: the data set takes options (``dataset_kwargs``); others refuse any.
        summary: first line of the class docstring.
    """

    key: str
    cls: type
    task: str
    channels: int
    classes: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | None = None
    data_dir: str | None = None
    takes_options: bool = False
    summary: str = ""

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` where the data names them."""
        return None if self.classes is None else len(self.classes)

    def source(self) -> ClassificationSource | SegmentationSource:
        """A reader of this data set (an instance of :attr:`cls`)."""
        return self.cls(self)


class ClassificationSource:
    """Reads one classification data set kind; its facts are in :attr:`info`."""

    def __init__(self, info: DatasetInfo):
        self.info = info

    def load(self, data_dir: str | Path | None, *, image_size: int, memory_budget_mb: int,
             options: dict | None) -> tuple[ImageData, ImageData]:
        """Training and validation data, whole (the caller takes subsets); ``data_dir`` is checked already."""
        raise NotImplementedError(f"{type(self).__name__} must define load()")

    def shape(self, image_size: int, options: dict | None) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image without reading any: the fixed :attr:`DatasetInfo.size` or ``image_size``."""
        side = self.info.size or image_size
        return self.info.channels, side, side


class SegmentationSource:
    """Reads one segmentation data set kind; its facts are in :attr:`info`."""

    def __init__(self, info: DatasetInfo):
        self.info = info

    def meta(self, data_dir: str | Path | None, *, scene_size: int, crop_size: int) -> SegMeta:
        """Channels, classes and training input size, without reading images: the crop by default."""
        if self.info.classes is None:
            raise NotImplementedError(f"{type(self).__name__} reads its classes from the data: define meta()")
        return SegMeta(self.info.channels, list(self.info.classes), (crop_size, crop_size))

    def load(self, data_dir: str | Path | None, *, train_limit: int | None, val_limit: int | None,
             scene_size: int, scene_seed: int, subset_seed: int | None) -> tuple[Any, Any]:
        """Training and validation data: :class:`~.base.SegData` in memory or a folder read on demand.

        A folder keeps ``train_limit`` / ``val_limit`` samples drawn from ``subset_seed`` (the first ones with
        ``None``); generated data makes that many.
        """
        raise NotImplementedError(f"{type(self).__name__} must define load()")


def _dataset_info(key: str, cls: type, *, task: str, channels: int, classes=None, mean=None, std=None,
                  size: int | None = None, data_dir: str | None = None, takes_options: bool = False) -> DatasetInfo:
    base = ClassificationSource if task == "classification" else SegmentationSource
    if task not in TASKS:
        raise ValueError(f"visattn: data set {key!r} has task={task!r}; expected one of {TASKS}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"visattn: a {task} data set must be a {base.__name__} subclass, got {cls!r}")
    doc = (cls.__doc__ or "").strip()
    return DatasetInfo(key, cls, task, int(channels), None if classes is None else tuple(classes),
                       None if mean is None else tuple(mean), None if std is None else tuple(std), size, data_dir,
                       takes_options, doc.splitlines()[0] if doc else "")


#: every data set kind, in registration order, filled when :mod:`visattn.data` is imported
CATALOGUE: Catalogue[DatasetInfo] = Catalogue("dataset", _dataset_info, package="visattn.data",
                                              lister="`visattn.data.list_datasets()` lists all names.")


def register_dataset(key: str, *, task: str, channels: int, classes=None, mean=None, std=None,
                     size: int | None = None, data_dir: str | None = None,
                     takes_options: bool = False) -> Callable[[Any], Any]:
    """Class decorator adding a data set kind to :data:`CATALOGUE` under ``key`` with its facts.

    Args:
        key: the data set's name (``--dataset``).
        task: ``"classification"`` or ``"segmentation"``.
        channels: image channels.
        classes: class names, or ``None`` where the data names them.
        mean: per-channel normalisation mean, or ``None`` where it is computed from the training split.
        std: per-channel normalisation std, likewise.
        size: fixed image side, or ``None``.
        data_dir: what ``data_dir`` must hold, for data sets that need one (the one-line error says it).
        takes_options: the data set takes ``dataset_kwargs``.
    """
    return CATALOGUE.decorator(key, task=task, channels=channels, classes=classes, mean=mean, std=std, size=size,
                               data_dir=data_dir, takes_options=takes_options)


def dataset_info(name: str, task: str | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``.

    Raises:
        ValueError: unknown ``name`` (with the closest names), or one of another task than ``task``.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"visattn: unknown task {task!r}; expected one of {TASKS}")
    names = list_datasets(task)
    what = "dataset" if task in (None, "classification") else "segmentation dataset"
    if name not in names:
        near = closest(name, names)
        hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
        raise ValueError(f"unknown {what} {name!r}; expected one of {tuple(names)}{hint}")
    return CATALOGUE.get(name)


def list_datasets(task: str | None = None) -> list[str]:
    """Registered data set names in registration order, of one ``task`` or all."""
    return [k for k in CATALOGUE if task is None or CATALOGUE.get(k).task == task]
