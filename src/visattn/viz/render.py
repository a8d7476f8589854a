"""Pixels: colour maps, overlays of a map on an image, matrices, PNG files, and the class-by-channel heat-map.

Overlays are composed here pixel by pixel (the map upsampled bilinearly to the image, as Grad-CAM does; the
image enlarged without smoothing so its pixels stay visible) and written as PNG with the standard library,
so they need nothing beyond torch. The class-by-channel heat-maps, which need axis labels, are drawn with
matplotlib when it is installed, and as labelled-by-caption plain images otherwise.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["colorize", "normalize", "rescale", "nearly_constant", "with_colorbar", "text_image", "overlay",
           "matrix_image", "write_png", "save_class_heatmap", "display_scale", "DISPLAY_SIZE", "CONSTANT_SPREAD"]

#: A map whose range is below this fraction of its mean magnitude is reported as nearly constant.
CONSTANT_SPREAD = 0.01

#: Overlays are enlarged by an integer factor to about this many pixels on their longer side.
DISPLAY_SIZE = 168

# matplotlib's viridis at 0, 0.1, ..., 1, interpolated linearly in between.
_VIRIDIS = ((0.267004, 0.004874, 0.329415), (0.282623, 0.140926, 0.457517), (0.253935, 0.265254, 0.529983),
            (0.206756, 0.371758, 0.553117), (0.163625, 0.471133, 0.558148), (0.127568, 0.566949, 0.550556),
            (0.134692, 0.658636, 0.517649), (0.266941, 0.748751, 0.440573), (0.477504, 0.821444, 0.318195),
            (0.741388, 0.873449, 0.149561), (0.993248, 0.906157, 0.143936))
# A blue - white - red diverging map (as matplotlib's RdBu_r) for signed values around 0.
_DIVERGING = ((0.019608, 0.188235, 0.380392), (0.262745, 0.576471, 0.764706), (0.968627, 0.968627, 0.968627),
              (0.839216, 0.376471, 0.301961), (0.403922, 0.0, 0.121569))
_CMAPS = {"viridis": _VIRIDIS, "diverging": _DIVERGING}


def colorize(values: torch.Tensor, cmap: str = "viridis") -> torch.Tensor:
    """``(...)`` values in [0, 1] -> ``(..., 3)`` uint8 RGB through colour map ``cmap`` (viridis or diverging)."""
    anchors = torch.tensor(_CMAPS[cmap], dtype=torch.float32)  # [K, 3]
    pos = values.float().clamp(0, 1) * (len(anchors) - 1)
    lo = pos.floor().long().clamp(max=len(anchors) - 2)
    frac = (pos - lo).unsqueeze(-1)
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    return (rgb * 255).round().to(torch.uint8)


def normalize(m: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Min-max scale to [0, 1] (all zeros for a constant map); returns ``(scaled, min, max)``."""
    m = m.float()
    lo, hi = float(m.min()), float(m.max())
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return torch.zeros_like(m), lo, hi
    return (m - lo) / (hi - lo), lo, hi


def rescale(m: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``m`` mapped from ``[lo, hi]`` to ``[0, 1]`` (clamped), e.g. on a range shared by several maps."""
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return torch.zeros_like(m, dtype=torch.float32)
    return ((m.float() - lo) / (hi - lo)).clamp(0, 1)


def nearly_constant(m: torch.Tensor, spread: float = CONSTANT_SPREAD) -> bool:
    """Whether the map's range (max - min) is below ``spread`` times its mean magnitude (a flat map)."""
    m = m.float()
    size = float(m.abs().mean())
    if size == 0:
        return True
    return float(m.max() - m.min()) < spread * size


# A 3 x 5 pixel font for the numbers of a colour bar: each glyph is 5 rows of 3 bits.
_GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0), "+": (0, 2, 7, 2, 0), "e": (0, 7, 7, 4, 7), " ": (0, 0, 0, 0, 0),
}


def text_image(text: str, scale: int = 2) -> torch.Tensor:
    """``text`` (digits, ``.``, ``-``, ``+``, ``e``, space) as a ``(5*scale, 4*scale*len, )`` bool mask."""
    cols = []
    for ch in text:
        rows = _GLYPHS.get(ch, _GLYPHS[" "])
        glyph = torch.tensor([[(r >> (2 - i)) & 1 for i in range(3)] + [0] for r in rows], dtype=torch.bool)
        cols.append(glyph)
    mask = torch.cat(cols, 1) if cols else torch.zeros(5, 0, dtype=torch.bool)
    return mask.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def with_colorbar(rgb: torch.Tensor, lo: float, hi: float, cmap: str = "viridis") -> torch.Tensor:
    """``rgb`` ``(H, W, 3)`` with a colour bar below it, ``lo`` written under its left end and ``hi`` under its right.

    Returns:
        ``(H + bar, W, 3)`` uint8: the picture, a white gap, the colour map from 0 to 1 left to right, the numbers.
    """
    h, w, _ = rgb.shape
    white = torch.full((1, w, 3), 255, dtype=torch.uint8)
    bar = colorize(torch.linspace(0, 1, w), cmap).unsqueeze(0).expand(max(6, h // 16), w, 3)
    labels = torch.full((14, w, 3), 255, dtype=torch.uint8)
    for text, left in ((f"{lo:.3g}", True), (f"{hi:.3g}", False)):
        mask = text_image(text)[:, : w // 2]
        x0 = 1 if left else w - mask.shape[1] - 1
        labels[2:2 + mask.shape[0], x0:x0 + mask.shape[1]][mask] = 0
    return torch.cat([rgb, white.expand(3, w, 3), bar, labels], 0)


def display_scale(h: int, w: int, target: int = DISPLAY_SIZE) -> int:
    """Integer enlargement that brings the longer side of ``h x w`` near ``target`` pixels (at least 1)."""
    return max(1, round(target / max(h, w)))


def image_rgb(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` image (uint8, or float in [0, 1]) -> ``(H, W, 3)`` float in [0, 1]; grey for C != 3."""
    x = image.float() / 255 if image.dtype == torch.uint8 else image.float().clamp(0, 1)
    if x.shape[0] != 3:
        x = x.mean(0, keepdim=True).expand(3, -1, -1)
    return x.permute(1, 2, 0)


def overlay(image: torch.Tensor, heat: torch.Tensor | None = None, *, alpha: float = 0.55,
            marker: tuple[int, int] | None = None, cmap: str = "viridis") -> torch.Tensor:
    """The image enlarged, with ``heat`` (in [0, 1], any ``(h, w)``) upsampled bilinearly and blended on it.

    Args:
        image: ``(C, H, W)`` uint8 (or float in [0, 1]).
        heat: ``(h, w)`` map in [0, 1], or None for the image alone.
        alpha: opacity of the colour map.
        marker: ``(y, x)`` pixel of the image to outline in red (a context module's query).
        cmap: colour map name (see :func:`colorize`).

    Returns:
        ``(s*H, s*W, 3)`` uint8, ``s`` = :func:`display_scale`.
    """
    rgb = image_rgb(image)  # [H, W, 3]
    h, w = rgb.shape[:2]
    s = display_scale(h, w)
    big = rgb.repeat_interleave(s, 0).repeat_interleave(s, 1)  # [sH, sW, 3]
    if heat is not None:
        up = F.interpolate(heat.float()[None, None], size=(s * h, s * w), mode="bilinear", align_corners=False)[0, 0]
        big = (1 - alpha) * big + alpha * colorize(up.clamp(0, 1), cmap).float() / 255
    out = (big * 255).round().clamp(0, 255).to(torch.uint8)
    if marker is not None:
        y, x = marker
        t = max(1, s // 3)  # outline width
        y0, y1, x0, x1 = max(0, y * s - t), min(s * h, (y + 1) * s + t), max(0, x * s - t), min(s * w, (x + 1) * s + t)
        red = torch.tensor([255, 0, 0], dtype=torch.uint8)
        out[y0:y0 + t, x0:x1] = red
        out[y1 - t:y1, x0:x1] = red
        out[y0:y1, x0:x0 + t] = red
        out[y0:y1, x1 - t:x1] = red
    return out


def matrix_image(m: torch.Tensor, *, cmap: str = "viridis", target: int = DISPLAY_SIZE) -> torch.Tensor:
    """A matrix ``(n, k)`` already in [0, 1] as a ``(cell_h*n, cell_w*k, 3)`` uint8 image of about ``target`` px."""
    n, k = m.shape
    sy, sx = max(1, round(target / n)), max(1, round(target / k))
    return colorize(m, cmap).repeat_interleave(sy, 0).repeat_interleave(sx, 1)


def write_png(path: str | Path, rgb: torch.Tensor) -> Path:
    """Write an ``(H, W, 3)`` uint8 tensor as an 8-bit RGB PNG (no dependency beyond the standard library)."""
    rgb = rgb.to(torch.uint8).contiguous()
    if rgb.dim() != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_png: expected (H, W, 3) uint8, got {tuple(rgb.shape)}")
    h, w, _ = rgb.shape
    rows = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), rgb.reshape(h, w * 3)], dim=1)  # filter 0 per row
    raw = bytes(rows.flatten().tolist())

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(png)
    return path


def _deviation(matrix: torch.Tensor) -> torch.Tensor:
    return matrix - matrix.mean(0, keepdim=True)


def save_class_heatmap(path: str | Path, matrix: torch.Tensor, rows: Sequence[str], title: str, *,
                       use_matplotlib: bool | None = None) -> str:
    """Draw a ``(classes, channels)`` matrix of mean weights, and its deviation from each channel's mean.

    Args:
        path: PNG to write.
        matrix: ``(K, C)`` mean weight of each channel over the images of each class.
        rows: the K class names.
        title: the figure's title.
        use_matplotlib: force (True) or avoid (False) matplotlib; default: use it when it is installed.

    Returns:
        ``"matplotlib"`` or ``"plain"``: what drew it (a plain image has no text: its rows are the classes
        in order, the top half the weights, the bottom half the deviations).
    """
    matrix = matrix.float().cpu()
    if use_matplotlib is None or use_matplotlib:
        try:
            from matplotlib.figure import Figure
        except ImportError:
            if use_matplotlib:
                raise
        else:
            _matplotlib_heatmap(Figure, Path(path), matrix, rows, title)
            return "matplotlib"
    dev = _deviation(matrix)
    lim = float(dev.abs().max()) or 1.0
    top = matrix_image(normalize(matrix)[0], target=240)
    bottom = matrix_image((dev / lim + 1) / 2, cmap="diverging", target=240)
    gap = torch.full((6, top.shape[1], 3), 255, dtype=torch.uint8)
    write_png(path, torch.cat([top, gap, bottom], dim=0))
    return "plain"


def _matplotlib_heatmap(figure_cls, path: Path, matrix: torch.Tensor, rows: Sequence[str], title: str) -> None:
    k, c = matrix.shape
    width, height = min(14.0, 5.5 + c / 10), 1.4 + 0.4 * k
    fig = figure_cls(figsize=(width, height), dpi=100)
    # Fixed margins (inches) rather than a layout engine: constrained layout doubles the drawing time.
    fig.subplots_adjust(left=1.35 / width, right=1 - 0.35 / width, top=1 - 0.3 / height, bottom=0.5 / height,
                        hspace=0.25)
    ax_w, ax_d = fig.subplots(2, 1, sharex=True)
    im = ax_w.imshow(matrix.numpy(), aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax_w, label="mean weight", fraction=0.15 / (width / 5.5), pad=0.02)
    dev = _deviation(matrix)
    lim = float(dev.abs().max()) or 1.0
    im = ax_d.imshow(dev.numpy(), aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax_d, label="minus channel mean", fraction=0.15 / (width / 5.5), pad=0.02)
    for ax in (ax_w, ax_d):
        ax.set_yticks(range(k))
        ax.set_yticklabels(list(rows), fontsize=7)
    ax_d.set_xlabel("channel")
    ax_w.set_title(title, fontsize=9)
    ax_d.set_title("deviation from the channel's mean over classes", fontsize=8)
    fig.savefig(path)
