"""An ImageFolder tree (``root/<class>/<image>``): listed, and decoded at one size (needs Pillow).

:func:`load_image_folder` decodes everything into memory; :mod:`.streaming` decodes the same files
batch by batch with :func:`decode_image`, so both give the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["load_image_folder", "scan_image_folder", "decode_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def scan_image_folder(root: str | Path) -> tuple[list[Path], torch.Tensor, list[str]]:
    """The image files under ``root/<class>/`` (sorted by class, then path), their labels and the class names.

    Raises:
        FileNotFoundError: no class folders, or no images in them.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise FileNotFoundError(f"{root}: expected one sub-folder per class with images in it")
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(path)
                labels.append(index)
    if not paths:
        raise FileNotFoundError(f"{root}: no images with extensions {IMAGE_EXTENSIONS}")
    return paths, torch.tensor(labels, dtype=torch.long), classes


def decode_image(path: str | Path, size: int, channels: int = 3) -> torch.Tensor:
    """One image file as uint8 ``(channels, size, size)``: converted to grey or RGB, bilinear resize.

    Raises:
        ValueError: the file is not a readable image.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("ImageFolder data needs Pillow: pip install pillow") from None
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            img = img.convert(mode).resize((size, size), Image.BILINEAR)
            raw = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return raw.reshape(size, size, channels).permute(2, 0, 1)


def load_image_folder(root: str | Path, size: int = 32, channels: int = 3
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load every image under ``root/<class>/`` resized to ``size`` x ``size``.

    Returns:
        uint8 images ``(N, channels, size, size)``, int64 labels ``(N,)``, and the sorted class names.
    """
    paths, labels, classes = scan_image_folder(root)
    return torch.stack([decode_image(p, size, channels) for p in paths]), labels, classes
