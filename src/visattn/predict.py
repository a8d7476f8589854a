"""Use a finished run: the top-k classes of image files, or palette PNG masks for a segmentation run.

Everything comes from the run folder through :func:`visattn.load_run`: the model with its weights, the
preprocessing it was trained with (input size, mean, std, channels) and the class names, so a picture on
disk is prepared exactly as the run's evaluation images were.

Example:
    >>> palette(3)[:9]
    [0, 0, 0, 128, 0, 0, 0, 128, 0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["predict_images", "segment_images", "image_tensor", "preprocess_settings", "palette", "class_names"]


def preprocess_settings(run) -> dict[str, Any]:
    """The run's preprocessing as ``{"task", "size", "channels", "mean", "std", "crop_pct"}``.

    ``size`` is the network's input side (None for a segmentation run: a fully convolutional network takes
    each image at its own size).
    """
    pre = _preprocessing(run)
    mean = tuple(float(v) for v in pre["mean"])
    std = tuple(float(v) for v in pre["std"])
    channels = int(pre.get("in_chans") or pre.get("channels") or len(mean))
    size = pre.get("img_size") or pre.get("input_size") or pre.get("size")
    if isinstance(size, (list, tuple)):
        size = int(size[-1])
    task = getattr(run.config, "task", "classification")
    return {"task": task, "size": None if task == "segmentation" or size is None else int(size),
            "channels": channels, "mean": mean, "std": std, "crop_pct": float(pre.get("crop_pct") or 1.0),
            "interpolation": pre.get("interpolation", "bilinear")}


def _preprocessing(run) -> dict[str, Any]:
    """The run's preprocessing as a dict: run.json's own (it keeps crop_pct and interpolation) when there is one."""
    import dataclasses
    import json

    info = Path(getattr(run, "path", "") or "", "run.json")
    if getattr(run, "path", None) is not None and info.is_file():
        saved = json.loads(info.read_text()).get("preprocessing")
        if isinstance(saved, Mapping) and "mean" in saved:
            return dict(saved)
    pre = getattr(run, "preprocess", None) or getattr(run, "preprocessing", None)
    if dataclasses.is_dataclass(pre):
        return dataclasses.asdict(pre)
    return dict(pre) if isinstance(pre, Mapping) else dict(vars(pre))


def class_names(run) -> list[str]:
    """The class names of an opened run, in the order of the model's outputs."""
    return list(getattr(run, "class_names", None) or run.classes)


def image_tensor(path: str | Path, settings: Mapping[str, Any]) -> torch.Tensor:
    """The image file at ``path`` prepared as the run's evaluation images: ``(C, H, W)`` float, normalised.

    Classification: the shorter side resized to ``size / crop_pct`` and the centre ``size`` square kept (for a
    run trained on squares with ``crop_pct`` 1, a plain resize). Segmentation: the image at its own size.

    Raises:
        ValueError: the file is missing or not a readable image (one line naming it).
    """
    from .data.image_files import read_image
    from .data.transforms import image_transform

    image = read_image(path, settings["channels"])
    if settings["size"] is not None:
        transform = image_transform(settings["size"], training=False, mean=settings["mean"], std=settings["std"],
                                    crop_pct=settings["crop_pct"], interpolation=settings["interpolation"])
        return transform(image)
    raw = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    x = raw.view(image.height, image.width, settings["channels"]).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(settings["mean"]).view(-1, 1, 1)
    std = torch.tensor(settings["std"]).view(-1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict_images(run, paths: Sequence[str | Path], *, topk: int = 5, batch_size: int = 32) -> list[dict[str, Any]]:
    """The ``topk`` most probable classes of each image, with their softmax probabilities.

    Args:
        run: an opened run (:func:`visattn.load_run`) of a classification task.
        paths: image files.
        topk: classes to list per image (at most the number of classes).
        batch_size: images per forward pass.

    Returns:
        One ``{"image": path, "top": [{"class": name, "index": i, "probability": p}, ...]}`` per image, most
        probable first.

    Raises:
        ValueError: a segmentation run, ``topk < 1``, or an unreadable image.
    """
    settings = preprocess_settings(run)
    if settings["task"] == "segmentation":
        raise ValueError("this is a segmentation run: use segment_images (visattn predict writes masks for it)")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    names = class_names(run)
    k = min(topk, len(names))
    model = run.model.eval()
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        x = torch.stack([image_tensor(p, settings) for p in chunk]).to(device)
        probs = model(x).float().softmax(1).cpu()  # [B, K]
        if probs.shape[1] != len(names):
            raise ValueError(f"the model gives {probs.shape[1]} scores but the run names {len(names)} classes")
        top = probs.topk(k, dim=1)
        for path, values, indices in zip(chunk, top.values, top.indices, strict=True):
            results.append({"image": str(path), "top": [{"class": names[i], "index": int(i), "probability": float(v)}
                                                        for v, i in zip(values.tolist(), indices.tolist(),
                                                                        strict=True)]})
    return results


def palette(num_classes: int) -> list[int]:
    """The PASCAL VOC colour map (``[r0, g0, b0, r1, ...]``, 256 entries), as VOC's own masks use.

    Class ``i`` gets colour ``i``; entry 255 (the ignore label) is white-ish as in VOC.
    """
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


@torch.no_grad()
def segment_images(run, paths: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write each image's predicted class map as a palette PNG ``out_dir/<stem>.png`` (pixel value = class index).

    Returns:
        The written files, in the order of ``paths``.

    Raises:
        ValueError: not a segmentation run, or an unreadable image.
    """
    from PIL import Image

    settings = preprocess_settings(run)
    if settings["task"] != "segmentation":
        raise ValueError("this is a classification run: use predict_images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = run.model.eval()
    device = next(model.parameters()).device
    colours = palette(len(class_names(run)))
    written = []
    for path in paths:
        x = image_tensor(path, settings)[None].to(device)
        output = model(x)
        logits = output["out"] if isinstance(output, Mapping) else output  # [1, K, H, W]
        mask = logits.argmax(1)[0].to(torch.uint8).cpu()  # [H, W]
        image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.numpy().tobytes())
        image.putpalette(colours)
        target = out / f"{Path(path).stem}.png"
        image.save(target)
        written.append(target)
    return written
