"""An ImageFolder tree (``root/<class>/<image>``), loaded into memory at one size (needs Pillow)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["load_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image_folder(root: str | Path, size: int = 32, channels: int = 3
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load every image under ``root/<class>/`` resized to ``size`` x ``size``.

    Returns:
        uint8 images ``(N, channels, size, size)``, int64 labels ``(N,)``, and the sorted class names.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("ImageFolder data needs Pillow: pip install pillow") from None
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise FileNotFoundError(f"{root}: expected one sub-folder per class with images in it")
    images, labels = [], []
    mode = "L" if channels == 1 else "RGB"
    for index, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert(mode).resize((size, size), Image.BILINEAR)
                    raw = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            except OSError as err:
                raise ValueError(f"{path}: not a readable image ({err})") from None
            images.append(raw.reshape(size, size, channels).permute(2, 0, 1))
            labels.append(index)
    if not images:
        raise FileNotFoundError(f"{root}: no images with extensions {IMAGE_EXTENSIONS}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), classes
