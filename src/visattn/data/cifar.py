"""CIFAR-10 / CIFAR-100 from an existing python-version folder (``cifar-10-batches-py``, ``cifar-100-python``).

The batches are pickled numpy arrays, so reading them needs numpy installed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

__all__ = ["load_cifar"]

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
