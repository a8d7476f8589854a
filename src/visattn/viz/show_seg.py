"""``visattn show`` on a segmentation run: input, ground truth, prediction, and the context heads' attention.

For each of a few validation images: the input; the ground-truth and predicted label maps in the data
set's colours (Pascal VOC's colour map; ignored pixels in VOC's cream); the per-class IoU of that image;
and, for every visattn module in the decode head, what it weighs: for the quadratic heads (non-local, PAM,
OC, MHSA) and criss-cross attention, the attention of one query pixel over the image (red square), the
figure DANet and CCNet print; for the others, whatever their ``attention_map`` gives (EMA's responsibilities,
DANet's channel matrix). Maps come from each module's ``attention_map`` on the input it received (recorded
with :class:`~visattn.viz.recorder.Recorder`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .draw import SCALES, draw_picture, scale_rule
from .html import Figure, Section, write_page
from .pictures import ShowError, ShowResult, module_pictures, query_pixel
from .recorder import Recorder, outermost
from .render import display_scale, overlay, write_png

__all__ = ["show_segmentation_run", "colorize_labels"]


def colorize_labels(labels: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` class indices -> ``(s*H, s*W, 3)`` uint8 in VOC's colour map, enlarged as :func:`overlay` does."""
    from ..data.seg_folders import voc_colormap

    rgb = voc_colormap()[labels.long().clamp(0, 255)]  # [H, W, 3]
    s = display_scale(*labels.shape)
    return rgb.repeat_interleave(s, 0).repeat_interleave(s, 1)


def _image_iou(pred: torch.Tensor, target: torch.Tensor, classes: list[str]) -> str:
    from ..train.metrics import confusion_matrix, segmentation_scores

    scores = segmentation_scores(confusion_matrix(pred, target, len(classes)))
    present = [f"{c} {v:.0f}" for c, v in zip(classes, scores["per_class_iou"], strict=True) if v == v]
    return f"mIoU {scores['miou']:.1f}% (IoU per class present: {', '.join(present)})"


def _samples(val, indices: list[int]):
    """uint8 images, int64 masks and normalised inputs of validation samples ``indices``."""
    from ..data.segmentation import SegData, folder_stats

    if isinstance(val, SegData):
        images = val.images[indices]
        masks = val.masks[indices].long()
        mean, std = torch.tensor(val.mean).view(1, -1, 1, 1), torch.tensor(val.std).view(1, -1, 1, 1)
        return [(images[i], masks[i], ((images[i:i + 1].float() / 255) - mean) / std) for i in range(len(indices))]
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in folder_stats(val))
    out = []
    for i in indices:
        image, mask = val.read(i)
        out.append((image, mask, ((image[None].float() / 255) - mean) / std))
    return out


def show_segmentation_run(run: Path, out: Path | None, *, images: int = 4, query: tuple[int, int] | None = None,
                          data_dir: str | None = None, device: str = "cpu", scale: str = "layer",
                          epoch: int | None = None, log: Callable[[str], None] = print) -> ShowResult:
    """Draw a trained segmentation run's predictions and head attention into ``out`` (default ``run/show``).

    ``scale`` is the colour rule of :func:`visattn.viz.draw.scale_rule`: ``"layer"`` (one range per map source
    over the drawn images) or ``"image"`` (each map its own range); the page's introduction states it.
    ``epoch``: that epoch's checkpoint instead of the newest.
    """
    if scale not in SCALES:
        raise ShowError(f"scale must be one of {SCALES}, got {scale!r}")
    from ..data.seg_folders import voc_colormap
    from ..train.device import resolve_device
    from ..train.run import load_run

    try:
        dev = resolve_device(device)
        opened = load_run(run, data_dir=data_dir, epoch=epoch,
                          report=lambda message: print(f"warning: {message}", file=sys.stderr))
        _, val = opened.task.load_data(opened.config)
    except (OSError, ValueError) as err:
        raise ShowError(f"cannot rebuild the run ({err}); pass --data-dir") from None
    config, model = opened.config, opened.model
    model.to(dev).eval()
    if images <= 0:
        raise ShowError(f"--images must be positive, got {images}")
    out = Path(out) if out else run / "show"
    out.mkdir(parents=True, exist_ok=True)
    result = ShowResult(page=out / "index.html")
    classes = list(val.classes)
    drawn = []  # per image: (image, mask, query pixel, prediction, pictures); drawn once every range is known
    for image, mask, x in _samples(val, list(range(min(images, len(val))))):
        h, w = mask.shape
        qy, qx = query_pixel(query, h, w)
        frac = ((qy + 0.5) / h, (qx + 0.5) / w)
        with Recorder(model, inputs=True) as rec, torch.no_grad():
            logits = model(x.to(dev))["out"][0].cpu()
            items = []
            for owner in outermost(rec.modules):
                found, notes = module_pictures(model, owner, rec, frac)
                items += [it for it in found if it.picture.kind != "channel"]
                if not drawn:
                    result.notes += notes
        drawn.append((image, mask, (qy, qx), logits.argmax(0), items))
    layers: dict[tuple[str, str], list[torch.Tensor]] = {}  # one colour range per map source over the images
    for *_, items in drawn:
        for it in items:
            layers.setdefault((it.owner, it.source), []).append(it.picture.data.flatten())

    def save(name: str, rgb: torch.Tensor) -> str:
        result.pictures.append(write_png(out / name, rgb))
        return name

    sections = []
    for b, (image, mask, (qy, qx), pred, items) in enumerate(drawn):
        h, w = mask.shape
        about = f"validation image #{b}, {w}x{h}"
        figs = [Figure(save(f"img{b:02d}-input.png", overlay(image, marker=(qy, qx) if items else None)), "input",
                       about + (f"; query pixel (y, x) = ({qy}, {qx}) in red" if items else "")),
                Figure(save(f"img{b:02d}-truth.png", colorize_labels(mask)), "ground truth", about),
                Figure(save(f"img{b:02d}-prediction.png", colorize_labels(pred)), "prediction",
                       _image_iou(pred, mask, classes))]
        for j, it in enumerate(items):
            layer = torch.cat(layers[(it.owner, it.source)])
            rgb, text = draw_picture(it, 0, image, (qy, qx), scale, layer=layer)
            figs.append(Figure(save(f"img{b:02d}-{j:02d}-{it.owner.replace('.', '_')}.png", rgb),
                               f"{it.key} at {it.owner}", f"{it.label}; {text}"))
        sections.append(Section(f"Image {b + 1}", figures=figs, level=3))
    palette = voc_colormap()[:len(classes)].tolist()
    colours = [f"{i}: {c} = rgb{tuple(v)}" for i, (c, v) in enumerate(zip(classes, palette, strict=True))]
    what = config.head if config.head in ("unet", "attention_unet") else \
        f"{config.backbone}-D{config.output_stride} + {config.head} head"
    res = run / "result.json"
    miou = json.loads(res.read_text())["miou"] if res.is_file() else None
    intro = [f"Run {run.name}: {what} on {config.dataset}"
             + (f", {miou:.2f}% mIoU on its validation images" if miou is not None else "") + ".",
             "Label colours are Pascal VOC's colour map. Attention maps: " + scale_rule(scale)
             + "; coloured with viridis and laid over the input, except channel-by-channel matrices (DANet's CAM), "
             "drawn as matrices (rows: output channels, columns: the channels they gather)."]
    page_sections = [Section("Images", text=f"{len(sections)} validation images.")] + sections
    page_sections.append(Section("Class colours", items=colours))
    if result.notes:
        page_sections.append(Section("Not drawn", items=list(result.notes)))
    write_page(result.page, f"visattn show: {run.name}", intro, page_sections)
    log(f"wrote {len(result.pictures)} pictures and {result.page}")
    return result
