"""CIFAR-10 / CIFAR-100 from an existing python-version folder (``cifar-10-batches-py``, ``cifar-100-python``).

The batches are pickled numpy arrays, so reading them needs numpy installed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .base import ImageData, image_stats
from .datasets import ClassificationSource, register_dataset

__all__ = ["load_cifar", "Cifar10", "Cifar100", "CIFAR10_CLASSES", "CIFAR100_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper",
    "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm")

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels",
                "batches.meta", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}


def _find(root: Path, folder: str, first: str) -> Path:
    for candidate in (root, root / folder):
        if (candidate / first).is_file():
            return candidate
    raise FileNotFoundError(f"no {folder} data under {root}: expected {root / folder / first} (the 'python "
                            f"version' archive from the CIFAR page, extracted)")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")  # noqa: S301 (the user's own data folder)
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path}: not a readable CIFAR batch ({err})") from None


def load_cifar(name: str, root: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load CIFAR-10/100 ``split`` as uint8 ``(N, 3, 32, 32)`` images, int64 labels and class names.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the extracted folder, or its parent.
        split: ``"train"`` or ``"test"``.
    """
    if name not in _LAYOUT:
        raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {sorted(_LAYOUT)}")
    folder, train_files, test_files, label_key, meta_file, names_key = _LAYOUT[name]
    files = train_files if split == "train" else test_files
    base = _find(Path(root), folder, files[0])
    images, labels = [], []
    for file in files:
        batch = _unpickle(base / file)
        try:
            images.append(torch.as_tensor(batch[b"data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
            labels.append(torch.as_tensor(list(batch[label_key]), dtype=torch.long))
        except (KeyError, RuntimeError) as err:
            raise ValueError(f"{base / file}: not a CIFAR batch ({err})") from None
    meta_path = base / meta_file
    classes = ([c.decode() for c in _unpickle(meta_path)[names_key]] if meta_path.is_file()
               else [str(i) for i in range(int(torch.cat(labels).max()) + 1)])
    return torch.cat(images), torch.cat(labels), classes


class _CifarSource(ClassificationSource):
    def load(self, data_dir, *, image_size, memory_budget_mb, options):
        tr_x, tr_y, classes = load_cifar(self.info.key, data_dir, "train")
        te_x, te_y, _ = load_cifar(self.info.key, data_dir, "test")
        mean, std = image_stats(tr_x)
        return ImageData(tr_x, tr_y, classes, mean, std), ImageData(te_x, te_y, classes, mean, std)


@register_dataset("cifar10", task="classification", channels=3, classes=CIFAR10_CLASSES, size=32,
                  data_dir="pointing at the extracted python-version folder")
class Cifar10(_CifarSource):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test RGB 32x32 images of 10 classes."""


@register_dataset("cifar100", task="classification", channels=3, classes=CIFAR100_CLASSES, size=32,
                  data_dir="pointing at the extracted python-version folder")
class Cifar100(_CifarSource):
    """CIFAR-100 (Krizhevsky, 2009): 50,000 training and 10,000 test RGB 32x32 images of 100 fine classes."""
