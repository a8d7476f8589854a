"""One picture of a module's weights, drawn the same way on every ``visattn show`` page, with its caption.

The colour rule is one sentence (:func:`scale_rule`) used both in the page's introduction and, in short, in
every caption, so the two never disagree:

- ``"layer"``: the maps of one layer share one colour range over the drawn images (a flat map looks flat);
- ``"image"``: each map spans the colour map from its own minimum to its own maximum.

Under either, a map whose range is under :data:`~visattn.viz.render.CONSTANT_SPREAD` (1%) of its mean is
drawn in one colour and captioned NEARLY CONSTANT, never stretched until its rounding noise looks like
structure. Channel-by-channel matrices (``"matrix"``) are drawn as matrices, never laid over the image. A spatial
transformer (``"transform"``) gets two pictures (:func:`draw_pictures`): its sampling window on the input and
its output (:mod:`visattn.viz.window`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .pictures import ModulePicture
from .render import CONSTANT_SPREAD, matrix_image, nearly_constant, overlay, rescale, with_colorbar
from .window import transform_pictures

__all__ = ["SCALES", "scale_rule", "colour_range", "describe_map", "draw_picture", "draw_pictures", "flat_value"]

#: How maps are coloured: one range per layer over the drawn images, or each map to its own range.
SCALES = ("layer", "image")


def scale_rule(scale: str) -> str:
    """The page's sentence on how maps are coloured under ``scale`` (the captions say the same, per map)."""
    if scale == "layer":
        rule = ("The maps of one layer share one colour range over the drawn images (the colour bar under each "
                "picture gives it), so a nearly flat map looks flat")
    elif scale == "image":
        rule = ("Each map is scaled to its own minimum and maximum (the colour bar under each picture gives them), "
                "so read the range")
    else:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return (rule + f"; a map whose range is under {CONSTANT_SPREAD:.0%} of its mean is drawn in one colour and "
            "captioned NEARLY CONSTANT")


def colour_range(maps: torch.Tensor, b: int, scale: str) -> tuple[float, float]:
    """The values the colour map spans: the layer's range over all drawn images ``maps``, or image ``b``'s own."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    m = maps if scale == "layer" else maps[b]
    return float(m.min()), float(m.max())


def flat_value(m: torch.Tensor, lo: float, hi: float) -> float:
    """Where a flat map's one colour sits in ``[0, 1]``: its mean on the range ``lo..hi``, mid-way if that is flat."""
    if nearly_constant(torch.tensor([lo, hi])):
        return 0.5
    return float(rescale(m.float().mean(), lo, hi))


def describe_map(m: torch.Tensor, lo: float, hi: float, scale: str) -> str:
    """Caption: the map's own range, the colours' range under ``scale``, and NEARLY CONSTANT when it is flat."""
    text = f"range {float(m.min()):.3g} to {float(m.max()):.3g}"
    if scale == "layer":
        text += f"; colours span {lo:.3g} to {hi:.3g}, shared by this layer's maps of all drawn images"
    else:
        text += "; coloured on its own range"
    if nearly_constant(m):
        text += (f"; NEARLY CONSTANT (range under {CONSTANT_SPREAD:.0%} of its mean): drawn in one colour, this map "
                 "weighs every position almost alike")
    return text


def draw_picture(item: ModulePicture, b: int, image: torch.Tensor, marker: tuple[int, int], scale: str = "layer",
                 layer: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
    """Image ``b`` of ``item`` as an RGB picture with its colour bar, and its caption.

    Args:
        item: the module's weights (``item.picture.data`` is batch-first).
        b: which image of the batch.
        image: ``(C, H, W)`` uint8 input image the map is laid over.
        marker: ``(y, x)`` query pixel, outlined for context maps.
        scale: ``"layer"`` or ``"image"`` (see :func:`scale_rule`).
        layer: the layer's maps over all drawn images, for the ``"layer"`` range (default ``item.picture.data``).

    Returns:
        ``(rgb, caption)``: ``rgb`` is ``(H', W', 3)`` uint8. For a ``"transform"`` picture this is its sampling
        window on the input; :func:`draw_pictures` gives its output as well.
    """
    p = item.picture
    if p.kind == "transform":
        _, rgb, caption = transform_pictures(item, b, image)[0]
        return rgb, caption
    if scale == "layer":
        lo, hi = colour_range(p.data if layer is None else layer, b, "layer")
    else:
        lo, hi = colour_range(p.data, b, scale)
    m = p.data[b]
    heat = torch.full(m.shape, flat_value(m, lo, hi)) if nearly_constant(m) else rescale(m, lo, hi)
    if p.kind == "matrix":
        return with_colorbar(matrix_image(heat), lo, hi), f"{tuple(m.shape)}, {describe_map(m, lo, hi, scale)}"
    text = f"{p.kind} weights on a {m.shape[0]}x{m.shape[1]} grid, {describe_map(m, lo, hi, scale)}"
    picture = overlay(image, heat, marker=marker if p.kind == "context" else None)
    return with_colorbar(picture, lo, hi), text


def draw_pictures(item: ModulePicture, b: int, image: torch.Tensor, marker: tuple[int, int], scale: str = "layer",
                  layer: torch.Tensor | None = None, *, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> list[tuple[str, torch.Tensor, str]]:
    """Every picture of image ``b`` of ``item``, each with a name and its caption.

    One picture (:func:`draw_picture`, named ``""``) for a map; two for a spatial transformer: ``"sampling
    window"`` and ``"output"`` (:func:`~visattn.viz.window.transform_pictures`, which uses ``mean`` and ``std``,
    the network input's normalisation, to draw the output as the network saw it).

    Returns:
        ``[(name, rgb, caption), ...]``: ``rgb`` is ``(H', W', 3)`` uint8.
    """
    if item.picture.kind == "transform":
        return transform_pictures(item, b, image, mean=mean, std=std)
    return [("", *draw_picture(item, b, image, marker, scale, layer))]
