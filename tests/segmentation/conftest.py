import gzip
from pathlib import Path

import pytest
import torch

from tests.data.test_fashion_mnist import idx_bytes


def write_split_set(folder: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """Fashion-MNIST look-alike: solid blobs; training items are classes 0-4, test items classes 5-9."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 5)):
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i in range(n):
            top, left = torch.randint(0, 10, (2,), generator=g).tolist()
            images[i, top:top + 16, left:left + 14] = 150 + i % 100
        labels = (torch.arange(n) % 5 + offset).to(torch.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


@pytest.fixture
def split_fmnist(tmp_path, monkeypatch):
    from visattn.data import fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return write_split_set(tmp_path / "fmnist")


def save_png(path: Path, array: torch.Tensor, mode: str, palette: torch.Tensor | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = array.to(torch.uint8)
    if mode == "RGB":
        img = Image.frombytes("RGB", (a.shape[1], a.shape[0]), a.contiguous().numpy().tobytes())
    else:
        img = Image.frombytes("L", (a.shape[1], a.shape[0]), a.contiguous().numpy().tobytes())
        if mode == "P":
            img = img.convert("P") if palette is None else img
            img.putpalette(palette.flatten().tolist())
    img.save(path)


def _sample(g: torch.Generator, h: int, w: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask of rectangles and an image whose colour is a function of the class (so alignment is checkable)."""
    mask = torch.zeros(h, w, dtype=torch.int64)
    for c in range(1, k):
        y, x = torch.randint(0, h - 4, (1,), generator=g).item(), torch.randint(0, w - 4, (1,), generator=g).item()
        mask[y:y + h // 3, x:x + w // 3] = c
    mask[0, 0] = 255  # an ignore pixel, as VOC's borders
    colours = torch.tensor([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
    image = colours[mask.clamp(max=k - 1)]  # [H, W, 3]
    return image, mask


@pytest.fixture
def voc_root(tmp_path):
    """A tiny VOC tree: 4 train + 2 val images of odd sizes, palette PNG masks in VOC's colour map."""
    from visattn.data.seg_folders import voc_colormap

    root = tmp_path / "VOC2012"
    g = torch.Generator().manual_seed(1)
    ids = {"train": [f"2007_00000{i}" for i in range(4)], "val": ["2008_000001", "2008_000002"]}
    for split, names in ids.items():
        for i, name in enumerate(names):
            image, mask = _sample(g, 37 + 3 * i, 45 - 2 * i, 5)
            save_png(root / "JPEGImages" / f"{name}.jpg", image, "RGB")
            save_png(root / "SegmentationClass" / f"{name}.png", mask, "P", voc_colormap())
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture
def generic_root(tmp_path):
    """images/{train,val} PNGs and masks/{train,val} grey PNGs with classes.txt (4 classes)."""
    root = tmp_path / "generic"
    g = torch.Generator().manual_seed(2)
    for split, n in (("train", 5), ("val", 2)):
        for i in range(n):
            image, mask = _sample(g, 30 + i, 41, 4)
            save_png(root / "images" / split / f"im{i}.png", image, "RGB")
            save_png(root / "masks" / split / f"im{i}.png", mask, "L")
    (root / "classes.txt").write_text("background\nred\ngreen\nblue\n")
    return root
