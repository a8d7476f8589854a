"""Fashion-MNIST (Xiao et al., 2017): 70,000 28x28 grey images of 10 clothing classes.

A given ``data_dir`` (else ``$VISATTN_DATA``) is used exactly as given: the folder itself or its
``fashion-mnist/`` must hold the four files, or it is an error (never a silent fall-back to another
copy). Only when neither is given are these searched, in order: Debian's ``dataset-fashion-mnist``
package (``/usr/share/datasets/fashion-mnist``) and the user cache
(``$XDG_CACHE_HOME/visattn/fashion-mnist``); if neither has the files, they are downloaded into the
cache from the canonical URLs and checked against the published MD5 sums.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch

from .base import ImageData, image_stats
from .datasets import ClassificationSource, register_dataset
from .download import ChecksumError, download
from .idx import IdxFormatError, read_idx

__all__ = ["CLASSES", "FILES", "DatasetNotFoundError", "FashionMNIST", "find_fashion_mnist", "load_fashion_mnist",
           "cache_dir"]

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: file name -> MD5 of the .gz published by the Fashion-MNIST authors
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
_HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it one of these ways:\n"
    "  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (files go to /usr/share/datasets/fashion-mnist)\n"
    "  - put the four idx .gz files in a folder and pass --data-dir DIR or set VISATTN_DATA=DIR\n"
    f"  - allow a download from {BASE_URL} (needs network)"
)


class DatasetNotFoundError(FileNotFoundError):
    """The data set is in none of the searched places and could not be downloaded."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/visattn`` (default ``~/.cache/visattn``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visattn"


def _given(data_dir: str | Path | None) -> tuple[Path, str] | None:
    """The folder the user named (``data_dir``, else ``$VISATTN_DATA``) and how they named it."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    env = os.environ.get("VISATTN_DATA")
    return (Path(env), "VISATTN_DATA") if env else None


def _use_given(folder: Path, how: str) -> Path:
    if not folder.exists():
        raise FileNotFoundError(f"{how} {folder}: no such folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"{how} {folder}: is a file, not a folder")
    for candidate in (folder, folder / "fashion-mnist"):
        if _complete(candidate):
            return candidate
    missing = [name for name in FILES if not (folder / name).is_file()]
    raise DatasetNotFoundError(f"{how} {folder}: no Fashion-MNIST there (missing {', '.join(missing)}, also "
                               f"not in {folder / 'fashion-mnist'}); nothing else is searched when a folder is given")


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def find_fashion_mnist(data_dir: str | Path | None = None, *, download_missing: bool = True,
                       base_url: str | None = None) -> Path:
    """Return the folder holding the four Fashion-MNIST idx .gz files, downloading them if allowed.

    Raises:
        DatasetNotFoundError: not found, and the download was not allowed or failed (the message says
            how to get the data); or the given folder does not hold the files.
        FileNotFoundError: the given ``data_dir`` / ``$VISATTN_DATA`` does not exist or is a file.
    """
    given = _given(data_dir)
    if given is not None:
        return _use_given(*given)
    for folder in (DEBIAN_DIR, cache_dir() / "fashion-mnist"):
        if _complete(folder):
            return folder
    if not download_missing:
        raise DatasetNotFoundError(_HOW_TO_GET)
    target = cache_dir() / "fashion-mnist"
    base_url = base_url or os.environ.get("VISATTN_FASHION_MNIST_URL", BASE_URL)
    try:
        for name, md5 in FILES.items():
            if not (target / name).is_file():
                download(base_url.rstrip("/") + "/" + name, target / name, md5=md5)
    except ChecksumError:
        raise
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DatasetNotFoundError(f"{_HOW_TO_GET}\n(the download failed: {err})") from None
    return target


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None, *,
                       download_missing: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: a folder with the idx .gz files (searched first).
        download_missing: download into the cache when no searched place has the files.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    folder = find_fashion_mnist(data_dir, download_missing=download_missing)
    prefix = "train" if split == "train" else "t10k"
    try:
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    except IdxFormatError as err:
        raise IdxFormatError(f"Fashion-MNIST in {folder} is corrupt: {err}") from None
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise IdxFormatError(f"Fashion-MNIST in {folder}: images {tuple(images.shape)} and labels "
                             f"{tuple(labels.shape)} do not pair up")
    return images, labels.long()


@register_dataset("fashion-mnist", task="classification", channels=1, classes=CLASSES, size=28)
class FashionMNIST(ClassificationSource):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test grey 28x28 images of 10 clothing classes.

    Found locally (``data_dir``, ``$VISATTN_DATA``, Debian's package, the cache) or downloaded; normalised
    with the training split's mean and std.
    """

    def load(self, data_dir, *, image_size, memory_budget_mb, options):
        tr_x, tr_y = load_fashion_mnist("train", data_dir)
        te_x, te_y = load_fashion_mnist("test", data_dir)
        tr_x, te_x, classes = tr_x.unsqueeze(1), te_x.unsqueeze(1), list(CLASSES)
        mean, std = image_stats(tr_x)
        return ImageData(tr_x, tr_y, classes, mean, std), ImageData(te_x, te_y, classes, mean, std)
