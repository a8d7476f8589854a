"""Point labels on a scatter plot that never overprint each other (needs matplotlib).

Greedy placement in the spirit of ggrepel / adjustText, without their dependency: each label tries offsets
on rings of growing radius around its point, in a fixed order of directions, and takes the first whose box
stays inside the axes and overlaps no label placed before it and no point's marker (nor, when it can, an
error bar). Labels of crowded points go first. Labels moved further than a marker's width get a thin leader
line to their point. Boxes are measured with the figure's renderer, so the axes must not move afterwards:
lay the figure out (``tight_layout``) and fix the axis limits before calling :func:`place_labels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["place_labels", "label_boxes"]

# Ring radii (points) and directions (degrees, counter-clockwise from the right) tried for each label, in order.
_RADII = (4, 8, 12, 17, 23, 30, 38, 47, 57, 68, 80, 94, 110, 128, 150, 175, 200)
_ANGLES = (0, 30, -30, 60, -60, 90, -90, 180, 150, -150, 120, -120, 15, -15, 165, -165, 45, -45, 135, -135)
_LEADER_FROM = 12  # points: farther labels get a leader line
_PAD = 2.0  # pixels kept free around every box


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _alignment(angle: float) -> tuple[str, str]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
    va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
    return ha, va


def _box(x: float, y: float, w: float, h: float, ha: str, va: str) -> tuple[float, float, float, float]:
    x0 = x if ha == "left" else x - w if ha == "right" else x - w / 2
    y0 = y if va == "bottom" else y - h if va == "top" else y - h / 2
    return x0 - _PAD, y0 - _PAD, x0 + w + _PAD, y0 + h + _PAD


def place_labels(ax, xy: Sequence[tuple[float, float]], labels: Sequence[str], *, fontsize: float = 8,
                 marker_radius: float = 4.0, yerr: Sequence[float | None] | None = None) -> list:
    """Annotate point ``i`` at data coordinates ``xy[i]`` with ``labels[i]``, no two labels overlapping.

    Args:
        ax: a matplotlib Axes whose layout and limits are final.
        xy: the points, in data coordinates.
        labels: one text per point.
        fontsize: the labels' size in points.
        marker_radius: half the markers' size in points (the labels keep clear of every marker).
        yerr: each point's vertical error bar half-length in data units (None: no bar), kept clear when possible.

    Returns:
        The annotations, in the order of ``xy``.

    Raises:
        ValueError: ``xy`` and ``labels`` differ in length, or a label finds no free place inside the axes.
    """
    if len(xy) != len(labels):
        raise ValueError(f"place_labels: {len(xy)} points but {len(labels)} labels")
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0  # pixels per point
    frame = ax.get_window_extent(renderer)
    inner = (frame.x0 + _PAD, frame.y0 + _PAD, frame.x1 - _PAD, frame.y1 - _PAD)
    points = [tuple(p) for p in ax.transData.transform(list(xy))] if len(xy) else []
    r = marker_radius * px
    markers = [(x - r, y - r, x + r, y + r) for x, y in points]
    bars = []
    for (x, _), (dx, dy), err in zip(points, xy, yerr or [None] * len(xy), strict=True):
        if err:
            lo = ax.transData.transform((dx, dy - err))[1]
            hi = ax.transData.transform((dx, dy + err))[1]
            bars.append((x - 1.5 * px, min(lo, hi), x + 1.5 * px, max(lo, hi)))
    sizes = []
    for text in labels:
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    # crowded points first: more neighbours within 60 points
    crowd = [sum(math.dist(p, q) < 60 * px for q in points) for p in points]
    order = sorted(range(len(points)), key=lambda i: (-crowd[i], i))
    placed: list[tuple[float, float, float, float]] = []
    chosen: dict[int, tuple[float, float, str, str]] = {}
    for i in order:
        (x, y), (w, h) = points[i], sizes[i]
        best = fallback = None  # best: clear of everything; fallback: crosses an error bar only
        for radius in _RADII:
            if best is not None or (fallback is not None and radius > fallback[0] + 20):
                break  # an error bar may be crossed rather than sending the label far away
            for angle in _ANGLES:
                ha, va = _alignment(angle)
                dx = radius * math.cos(math.radians(angle))
                dy = radius * math.sin(math.radians(angle))
                box = _box(x + dx * px, y + dy * px, w, h, ha, va)
                if not (inner[0] <= box[0] and box[2] <= inner[2] and inner[1] <= box[1] and box[3] <= inner[3]):
                    continue
                if any(_overlap(box, other) for other in placed) or any(_overlap(box, m) for m in markers):
                    continue
                if not any(_overlap(box, b) for b in bars):
                    best = (radius, dx, dy, ha, va, box)
                    break
                fallback = fallback or (radius, dx, dy, ha, va, box)
        if best is None and fallback is None:
            raise ValueError(f"place_labels: no free place for the label {labels[i]!r} inside the axes")
        _, dx, dy, ha, va, box = best or fallback
        placed.append(box)
        chosen[i] = (dx, dy, ha, va)
    annotations = []
    for i, ((px_, py_), text) in enumerate(zip(xy, labels, strict=True)):
        dx, dy, ha, va = chosen[i]
        leader = math.hypot(dx, dy) > _LEADER_FROM
        annotations.append(ax.annotate(
            text, (px_, py_), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=fontsize,
            arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=0, shrinkB=marker_radius)
            if leader else None))
    return annotations


def label_boxes(annotations: Sequence, renderer) -> list:
    """The text boxes (display coordinates, leader lines excluded) of ``annotations``, e.g. to check overlaps."""
    from matplotlib.text import Text

    return [Text.get_window_extent(a, renderer) for a in annotations]
