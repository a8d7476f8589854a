"""``visattn show``: the attention of a trained model as pictures, with Grad-CAM beside it, on one HTML page.

For a few test images: the input; every spatial weight map (upsampled and overlaid on the input); for context
modules the attention of one query pixel; for a spatial transformer its sampling window outlined on the input
and its output at its own size (:mod:`visattn.viz.window`); and Grad-CAM of the predicted class at the last
convolutional stage, to compare what a module weighs with what the class score depends on. For channel
weights: a class-by-channel heat-map of their mean over the test set, per module. The weights come from each
module's ``attention_map`` on the input it received in the forward pass (recorded with
:class:`~visattn.viz.recorder.Recorder`), and from its recorded ``gate`` / ``attend`` steps for anything
``attention_map`` does not give.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import BatchLoader, ImageData
from .draw import SCALES, draw_pictures, scale_rule
from .gradcam import find_last_stage, grad_cam
from .html import Figure, Section, write_page
from .maps import interpret
from .pictures import ModulePicture, ShowError, ShowResult, module_pictures, query_pixel
from .recorder import Recorder, inside, outermost
from .render import CONSTANT_SPREAD, normalize, overlay, save_class_heatmap, with_colorbar, write_png

__all__ = ["ShowError", "ShowResult", "ModulePicture", "show_run", "show_model", "load_run", "parse_classes",
           "select_images", "module_pictures"]


# -- arguments ----------------------------------------------------------------------------------------------
def parse_classes(tokens: Sequence[str] | None, classes: Sequence[str]) -> list[int] | None:
    """Class indices for names or indices (comma-separated or separate tokens, case-insensitive names)."""
    if not tokens:
        return None
    lower = {c.lower(): i for i, c in enumerate(classes)}
    wanted: list[int] = []
    for token in tokens:
        for part in (p.strip() for p in str(token).split(",")):
            if not part:
                continue
            if part.lower() in lower:
                idx = lower[part.lower()]
            elif part.lstrip("-").isdigit():
                idx = int(part)
                if not 0 <= idx < len(classes):
                    raise ShowError(f"class index {idx} is out of range: there are {len(classes)} classes "
                                    f"(0..{len(classes) - 1})")
            else:
                raise ShowError(f"unknown class {part!r}; the classes are {', '.join(classes)}")
            if idx not in wanted:
                wanted.append(idx)
    return wanted or None


def select_images(labels: torch.Tensor, n: int, class_ids: Sequence[int] | None = None) -> list[int]:
    """Indices of the first ``n`` images, or of the first ``n`` whose label is in ``class_ids``."""
    if n <= 0:
        raise ShowError(f"--images must be positive, got {n}")
    idx = torch.arange(len(labels))
    if class_ids is not None:
        idx = idx[torch.isin(labels, torch.tensor(list(class_ids), dtype=labels.dtype))]
    if len(idx) == 0:
        raise ShowError("no test image has the requested class(es)")
    return idx[:n].tolist()


# -- loading a run ------------------------------------------------------------------------------------------
def load_run(run_dir: str | Path, *, data_dir: str | None = None, device: str = "cpu", epoch: int | None = None):
    """Rebuild a trained run: ``(model in eval mode, config, test ImageData, checkpoint epoch, result or None)``.

    ``epoch``: that epoch's checkpoint (kept with ``--keep-checkpoints 0``) instead of the newest; its result
    is that epoch's validation accuracy from metrics.jsonl (None when not recorded).

    Raises:
        ShowError: the folder is not a run, has no readable checkpoint, or its data cannot be loaded.
    """
    from ..data.loader import load_dataset
    from ..train.device import resolve_device
    from ..train.run import load_run as open_run

    run = Path(run_dir)
    if not run.is_dir():
        raise ShowError(f"{run}: no such folder")
    if not (run / "config.json").is_file():
        runs = sorted(p.name for p in run.iterdir() if (p / "config.json").is_file())
        if runs:  # a compare / ablate folder: say which runs it holds
            raise ShowError(f"{run}: a folder of {len(runs)} runs, not one run; show one of them: "
                            + ", ".join(str(run / name) for name in runs))
        raise ShowError(f"{run}: not a training run (no config.json); train one with `visattn train --out {run}`")
    try:
        dev = resolve_device(device)  # before any data: a missing CUDA fails at once
        opened = open_run(run, data_dir=data_dir, epoch=epoch,
                          report=lambda message: print(f"warning: {message}", file=sys.stderr))
    except ValueError as err:
        raise ShowError(str(err)) from None
    config = opened.config
    try:
        _, test = load_dataset(config.dataset, data_dir or config.data_dir, image_size=config.image_size,
                               dataset_kwargs=config.dataset_kwargs)
        test = test if isinstance(test, ImageData) else test.to_memory()  # pictures need the pixels at hand
    except (OSError, ValueError) as err:
        raise ShowError(f"cannot load the {config.dataset} test set ({err}); pass --data-dir") from None
    result = opened.result if epoch is None else _epoch_scores(run, epoch)
    return opened.model.to(dev).eval(), config, test, opened.epoch, result


def _epoch_scores(run: Path, epoch: int) -> dict | None:
    """The validation scores metrics.jsonl recorded at ``epoch`` (``{"accuracy": ...}``), or None."""
    from ..train.logs import read_jsonl

    try:
        rows = read_jsonl(run / "metrics.jsonl")
    except (OSError, ValueError):
        return None
    row = next((r for r in rows if r.get("epoch") == epoch and "val_accuracy" in r), None)
    return None if row is None else {"accuracy": row["val_accuracy"]}


def show_run(run_dir: str | Path, out: str | Path | None = None, *, images: int = 4,
             classes: Sequence[str] | None = None, query: tuple[int, int] | None = None,
             data_dir: str | None = None, limit: int | None = None, device: str = "cpu",
             gradcam_layer: str | None = None, modules: Sequence[str] | None = None, scale: str = "layer",
             epoch: int | None = None, log: Callable[[str], None] = print) -> ShowResult:
    """``visattn show``: load the run in ``run_dir`` (latest good checkpoint) and write the page to ``out``.

    Args:
        run_dir: a folder written by ``visattn train``.
        out: output folder (default ``run_dir/show``, ``run_dir/show-epochNNN`` with ``epoch``).
        images: how many test images to draw.
        classes: only images of these classes (names or indices).
        query: ``(y, x)`` query pixel in input-image coordinates for context modules (default: the centre).
        data_dir: where the data set is, when not where the run found it.
        limit: average channel weights over the first ``limit`` test images (default: the run's ``val_limit``,
            all when that is unset).
        device: ``cpu``, ``cuda`` or ``auto``.
        gradcam_layer: the module Grad-CAM explains (default: the last convolutional stage).
        modules: draw only the visattn modules with these registry keys (default: all).
        scale: ``"layer"`` (one colour range per layer over the drawn images) or ``"image"`` (per map).
        epoch: draw that epoch's checkpoint (a run trained with ``--keep-checkpoints 0`` keeps every epoch's).
        log: where progress lines go.
    """
    default_out = Path(run_dir) / ("show" if epoch is None else f"show-epoch{epoch:03d}")
    if _is_segmentation_run(Path(run_dir)):
        from .show_seg import show_segmentation_run

        given = {"--classes": classes, "--limit": limit, "--modules": modules, "--gradcam-layer": gradcam_layer}
        unused = [flag for flag, value in given.items() if value is not None]
        if unused:  # pictures of a segmentation run are per pixel: no class filter, channel mean or Grad-CAM
            raise ShowError(f"{', '.join(unused)}: not for a segmentation run (show draws its input, truth, "
                            "prediction and the head's attention); drop the option")

        return show_segmentation_run(Path(run_dir), Path(out) if out else default_out, images=images, query=query,
                                     data_dir=data_dir, device=device, scale=scale, epoch=epoch, log=log)
    model, config, test, epoch, result = load_run(run_dir, data_dir=data_dir, device=device, epoch=epoch)
    class_ids = parse_classes(classes, test.classes)
    indices = select_images(test.labels, images, class_ids)
    run = Path(run_dir)
    intro = [f"Run {run.name}: {config.backbone} + {config.attention or 'no attention'}"
             + (f" ({config.position})" if config.attention and config.position != "standard" else "")
             + f" on {config.dataset}, checkpoint of epoch {epoch}"
             + (f", {result['accuracy']:.2f}% top-1 on its validation images at that epoch" if result else "") + "."]
    limit = config.val_limit if limit is None else limit
    return show_model(model, test, Path(out) if out else default_out, indices=indices, query=query, limit=limit,
                      gradcam_layer=gradcam_layer, title=f"visattn show: {run.name}", intro=intro, modules=modules,
                      scale=scale, log=log)


def _is_segmentation_run(run: Path) -> bool:
    try:
        return json.loads((run / "config.json").read_text()).get("task") == "segmentation"
    except (OSError, ValueError):
        return False  # load_run reports what is wrong with the folder


# -- drawing ------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "model"


def _normalized(data: ImageData, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    sub = ImageData(data.images[list(indices)], data.labels[list(indices)], data.classes, data.mean, data.std)
    return next(iter(BatchLoader(sub, len(sub))))


def _is_channel(t: torch.Tensor) -> bool:
    pictures, _ = interpret(t, in_hw=(1, 1))
    return bool(pictures) and all(p.kind == "channel" for p in pictures)


def _channel_means(model: nn.Module, data: ImageData, channel_items: list[ModulePicture], rec_first: Recorder,
                   query: tuple[float, float], limit: int | None, batch_size: int, device: torch.device):
    """Mean channel weights per class over the test set, for each channel picture; plus the accuracy."""
    owners = sorted({it.owner for it in channel_items})
    wanted = {(it.owner, it.label) for it in channel_items}
    # Only the steps that gave channel weights: an attention matrix recorded over the whole test set would not fit.
    sites = [s.path for s in rec_first.sites.values() if any(inside(s.path, o) for o in owners)
             and rec_first.records[s.path] and all(_is_channel(t) for t in rec_first.records[s.path])]
    k = len(data.classes)
    sums: dict[tuple[str, str], torch.Tensor] = {}
    counts = torch.zeros(k)
    correct = seen = 0
    sub = data.subset(limit)
    with Recorder(model, sites=sites, inputs=owners) as rec, torch.no_grad():
        for x, y in BatchLoader(sub, batch_size):
            logits = model(x.to(device))
            correct += int((logits.argmax(1).cpu() == y).sum())
            seen += len(y)
            onehot = F.one_hot(y, k).float()  # [B, K]
            counts += onehot.sum(0)
            for owner in owners:
                for it in module_pictures(model, owner, rec, query)[0]:
                    if it.picture.kind == "channel" and (owner, it.label) in wanted:
                        acc = onehot.t() @ it.picture.data.float()  # [K, C]
                        sums[(owner, it.label)] = sums.get((owner, it.label), 0) + acc
            rec.clear()
    means = {key: s / counts.clamp(min=1)[:, None] for key, s in sums.items()}
    return means, counts, 100.0 * correct / max(1, seen), seen


def show_model(model: nn.Module, data: ImageData, out: str | Path, *, indices: Sequence[int],
               query: tuple[int, int] | None = None, limit: int | None = None, gradcam_layer: str | None = None,
               batch_size: int = 128, title: str = "visattn show", intro: Sequence[str] = (),
               modules: Sequence[str] | None = None, scale: str = "layer",
               log: Callable[[str], None] = print) -> ShowResult:
    """Draw the attention of ``model`` on images ``indices`` of ``data`` into ``out`` (PNGs and index.html).

    Args:
        model: a classifier holding visattn modules (put in eval mode here).
        data: the test images (uint8) with their labels, classes and normalisation.
        out: output folder (created).
        indices: which images of ``data`` to draw.
        query: ``(y, x)`` pixel of the input for context modules' attention (default: the centre).
        limit: average channel weights over the first ``limit`` images of ``data`` (default: all).
        gradcam_layer: module explained by Grad-CAM (default: :func:`find_last_stage`).
        batch_size: batch size of the pass over ``data``.
        title: the page's title.
        intro: the page's first paragraphs.
        modules: draw only the visattn modules with these registry keys (default: all).
        scale: ``"layer"``: each layer's maps share one colour range over the drawn images, so a flat map
            looks flat; ``"image"``: each map spans the whole colour map (its own min to max). Every map
            PNG has a colour bar with the range, and the page says when a map is nearly constant.
        log: where progress lines go.
    """
    if scale not in SCALES:
        raise ShowError(f"scale must be one of {SCALES}, got {scale!r}")
    out = Path(out)
    if gradcam_layer is not None:
        try:
            model.get_submodule(gradcam_layer)
        except AttributeError:
            children = [n for n, _ in model.named_children()]
            raise ShowError(f"--gradcam-layer {gradcam_layer!r} is not a module of the model; its children are "
                            f"{children}") from None
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    h, w = data.images.shape[-2:]
    qy, qx = query_pixel(query, h, w)
    frac = ((qy + 0.5) / h, (qx + 0.5) / w)
    x, labels = _normalized(data, indices)
    x = x.to(device)
    images = data.images[list(indices)]
    result = ShowResult(page=out / "index.html")

    with Recorder(model, inputs=True) as rec, torch.no_grad():
        logits = model(x)
        owners = outermost(rec.modules)
        if modules is not None:
            chosen = [o for o in owners if rec.modules[o] in modules]
            if not chosen:
                found = sorted(set(rec.modules[o] for o in owners)) or "none"
                raise ShowError(f"--modules {','.join(modules)}: the model holds no such module (it holds {found})")
            owners = chosen
        items: list[ModulePicture] = []
        for owner in owners:
            found, notes = module_pictures(model, owner, rec, frac)
            items += found
            result.notes += notes
    probs = logits.float().softmax(1).cpu()
    preds = probs.argmax(1)
    if not owners:
        result.notes.append("the model holds no visattn module: only Grad-CAM is drawn")

    try:
        layer = gradcam_layer or find_last_stage(model, x[:1])
        cam, _ = grad_cam(model, x, layer)
        cam = cam.cpu()
    except ValueError as err:
        layer, cam = None, None
        result.notes.append(f"Grad-CAM not drawn: {err}")

    def save(name: str, rgb: torch.Tensor) -> str:
        result.pictures.append(write_png(out / name, rgb))
        return name

    sections = []
    flat: list[str] = []
    per_image = [it for it in items if it.picture.kind != "channel"]
    for b, idx in enumerate(indices):
        cls, pred = data.classes[int(labels[b])], data.classes[int(preds[b])]
        verdict = "correct" if cls == pred else "wrong"
        about = f"test image #{idx}, class {cls}, predicted {pred} ({verdict})"
        figs = [Figure(save(f"img{b:02d}-input.png", overlay(images[b])), "input", about)]
        if cam is not None:
            m, lo, hi = normalize(cam[b])  # Grad-CAM is relative by construction: each map on its own range
            figs.append(Figure(save(f"img{b:02d}-gradcam.png", with_colorbar(overlay(images[b], m), lo, hi)),
                               f"Grad-CAM at {layer}", f"predicted class {pred}; {m.shape[0]}x{m.shape[1]} grid, "
                               f"range {lo:.3g} to {hi:.3g} (its own); {about}"))
        for j, it in enumerate(per_image):
            for what, rgb, text in draw_pictures(it, b, images[b], (qy, qx), scale, mean=data.mean, std=data.std):
                if "NEARLY CONSTANT" in text:
                    flat.append(f"{it.key} {it.picture.kind} map at {it.owner or '(model)'} ({it.label}), "
                                f"image {b + 1}")
                name = save(f"img{b:02d}-{j:02d}-{_slug(it.owner)}" + (f"-{_slug(what)}" if what else "") + ".png",
                            rgb)
                heading = f"{it.key} at {it.owner or '(model)'}" + (f": {what}" if what else "")
                figs.append(Figure(name, heading, f"{it.label}; {text}; {about}"))
        sections.append(Section(f"Image {b + 1}: {cls}, predicted {pred} ({probs[b, preds[b]]:.0%}, {verdict})",
                                figures=figs, level=3))

    channel_items = [it for it in items if it.picture.kind == "channel"]
    heat_figs = []
    accuracy_line = ""
    if channel_items:
        n = len(data) if limit is None else min(limit, len(data))
        log(f"averaging {len(channel_items)} channel weight vectors over {n:,} test images ...")
        means, counts, acc, seen = _channel_means(model, data, channel_items, rec, frac, limit, batch_size, device)
        accuracy_line = f"Channel weights averaged over {seen:,} test images ({acc:.2f}% of them classified right)."
        rows = [f"{c} ({int(n)})" for c, n in zip(data.classes, counts.tolist(), strict=True)]
        for j, it in enumerate(channel_items):
            matrix = means.get((it.owner, it.label))
            if matrix is None:
                result.notes.append(f"{it.key} at {it.owner}: {it.label} was not computed on the test set")
                continue
            name = f"channels-{j:02d}-{_slug(it.owner)}.png"
            how = save_class_heatmap(out / name, matrix, rows, f"{it.key} at {it.owner or '(model)'}: {it.label}")
            result.pictures.append(out / name)
            caption = (f"{it.label}. Top: mean weight of each channel (columns) over the test images of each "
                       "class (rows); bottom: minus the channel's mean over classes.")
            if how == "plain":
                caption += f" Rows, top to bottom: {', '.join(data.classes)}."
            heat_figs.append(Figure(name, f"{it.key} at {it.owner or '(model)'}", caption))

    query_note = (f"Context modules: attention of the query pixel (y, x) = ({qy}, {qx}) of the {h}x{w} input "
                  "(red square), mapped to each module's grid." if any(it.picture.kind == "context"
                                                                       for it in items) else "")
    page_intro = list(intro) + [
        scale_rule(scale) + "; coloured with viridis (dark: low, yellow: high), upsampled bilinearly and laid "
        "over the input. "
        "Grad-CAM (Selvaraju et al., ICCV 2017) shows where the predicted class's score depends on the last "
        "convolutional stage: compare it with what the attention modules weigh."]
    if flat:
        page_intro.append(f"Nearly constant maps (range under {CONSTANT_SPREAD:.0%} of the mean; they weigh every "
                          f"position almost alike, whatever the colours suggest): {'; '.join(flat)}.")
    page_intro += [s for s in (query_note, accuracy_line) if s]
    page_sections = [Section("Images", text=f"{len(indices)} test images.")] + sections
    if heat_figs:
        page_sections.append(Section("Channel weights by class", figures=heat_figs, wide=True))
    if result.notes:
        page_sections.append(Section("Not drawn", items=list(result.notes)))
    write_page(result.page, title, page_intro, page_sections)
    log(f"wrote {len(result.pictures)} pictures and {result.page}")
    return result
