"""Cluttered Fashion-MNIST: one Fashion-MNIST item somewhere on a larger canvas, among pieces of other items.

The classification task that attention was invented for: the item no longer fills the frame, so a network
has to find it and ignore what is around it. It follows the RAM paper's cluttered translated MNIST (Mnih et
al., "Recurrent Models of Visual Attention", NeurIPS 2014, arXiv:1406.6247: a 60x60 canvas, the digit at a
random position, 8x8 pieces of other digits as clutter) and, with ``rotation`` / ``scale``, the Spatial
Transformer paper's RTS variant (Jaderberg et al., NeurIPS 2015, arXiv:1506.02025: rotated by up to +-45
degrees, scaled by 0.7-1.2).

Every image is a deterministic function of ``(split, index, seed)``: its random numbers come from a
counter-based hash of those three and a stream number, not from a sequential generator, so an image is
the same whichever batch asks for it, and a whole batch is made with tensor operations (no per-image loop).
The item at index ``i`` is source image ``i`` of the same split (so the label is the source's), and the
clutter pieces are cut from other images of the same split (train from train, test from test).

Example:
    >>> import torch
    >>> src = torch.zeros(10, 28, 28, dtype=torch.uint8); src[:, 4:24, 4:24] = 200
    >>> out = render(src, torch.arange(4), ClutterSpec(canvas=40, clutter=2), split="train")
    >>> out.shape, out.dtype
    (torch.Size([4, 1, 40, 40]), torch.uint8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from .base import ImageData, image_stats
from .datasets import ClassificationSource, register_dataset
from .fashion_mnist import CLASSES, load_fashion_mnist

__all__ = ["ClutterSpec", "ClutteredImages", "ClutteredFashionMNIST", "RTS", "render", "item_centres",
           "item_geometry", "item_size_bound", "uniforms"]

ITEM = 28  # Fashion-MNIST images are 28 x 28
#: The STN paper's RTS distortion: rotation up to +-45 degrees, scale 0.7-1.2.
RTS: dict[str, tuple[float, float]] = {"rotation": (-45.0, 45.0), "scale": (0.7, 1.2)}
_SPLITS = {"train": 1, "test": 2}
_MASK = 0xFFFFFFFF
_ITEM_STREAMS = 4  # angle, scale, x, y
_PIECE_STREAMS = 5  # source image, crop y, crop x, canvas y, canvas x
_FIRST_PIECE_STREAM = 16


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"cluttered-fashion-mnist: {name} must be a (low, high) pair, got {value!r}") from None
    if lo > hi:
        raise ValueError(f"cluttered-fashion-mnist: {name} range ({lo:g}, {hi:g}) is out of order (low > high)")
    return lo, hi


def _spread(angles: tuple[float, float]) -> float:
    """Largest ``|cos a| + |sin a|`` for ``a`` in the range (degrees): how much a rotation widens a square."""
    lo, hi = angles
    points = torch.linspace(lo, hi, 2001, dtype=torch.float64)
    # the maximum sits at a multiple of 45 degrees (odd) when the range holds one, else at an end
    extra = torch.tensor([a for a in range(math.floor(lo / 45) * 45, math.ceil(hi / 45) * 45 + 1, 45)
                          if lo <= a <= hi] or [lo], dtype=torch.float64)
    r = torch.deg2rad(torch.cat([points, extra]))
    return float((r.cos().abs() + r.sin().abs()).max())


def item_size_bound(rotation: tuple[float, float], scale: tuple[float, float]) -> float:
    """Side of the smallest canvas that holds the item at every allowed rotation and scale (pixels).

    Without distortion the item is pasted at whole-pixel offsets: 28. With it, the item is resampled
    bilinearly, which can light a pixel up to one source pixel beyond the item's edge: ``29 * s * spread``.
    """
    if rotation == (0.0, 0.0) and scale == (1.0, 1.0):
        return float(ITEM)
    return (ITEM + 1) * scale[1] * _spread(rotation)


@dataclass(frozen=True)
class ClutterSpec:
    """How a cluttered image is made.

    Args:
        canvas: side of the square canvas (RAM paper: 60).
        clutter: clutter pieces per image (RAM paper: 4 for 60x60).
        clutter_size: side of a clutter piece (RAM paper: 8).
        rotation: item rotation range in degrees (STN's RTS: (-45, 45); default none).
        scale: item scale range (STN's RTS: (0.7, 1.2); default 1).
        seed: which cluttered version of the data set (the same source images, other positions / clutter).

    Raises:
        ValueError: a canvas smaller than the item, a negative clutter count, a piece larger than an item,
            or a range out of order; the message names the argument.
    """

    canvas: int = 60
    clutter: int = 4
    clutter_size: int = 8
    rotation: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotation", _pair(self.rotation, "rotation"))
        object.__setattr__(self, "scale", _pair(self.scale, "scale"))
        if self.clutter < 0:
            raise ValueError(f"cluttered-fashion-mnist: clutter (pieces per image) must be >= 0, got {self.clutter}")
        if not 1 <= self.clutter_size <= ITEM:
            raise ValueError(f"cluttered-fashion-mnist: clutter_size must be in 1..{ITEM} (pieces are cut from "
                             f"{ITEM}x{ITEM} images), got {self.clutter_size}")
        if self.scale[0] <= 0:
            raise ValueError(f"cluttered-fashion-mnist: scale must be positive, got {self.scale}")
        need = item_size_bound(self.rotation, self.scale)
        if self.canvas < need:
            raise ValueError(f"cluttered-fashion-mnist: canvas {self.canvas} is smaller than the item (needs >= "
                             f"{math.ceil(need)} for scale up to {self.scale[1]:g} and rotation {self.rotation})")

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> ClutterSpec:
        """From a config's ``dataset_kwargs`` (``rts=True`` sets the STN paper's rotation and scale ranges)."""
        options = dict(options or {})
        if options.pop("rts", False):
            for key, value in RTS.items():
                options.setdefault(key, value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"cluttered-fashion-mnist: unknown option(s) {unknown}; expected {sorted(known)} or rts")
        return cls(**options)

    @property
    def distorted(self) -> bool:
        return self.rotation != (0.0, 0.0) or self.scale != (1.0, 1.0)


# --------------------------------------------------------------------------------------------- random numbers


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x < 2**32`` without int64 overflow (c split in 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function (Wellons' ``lowbias32``) on int64 tensors holding 32-bit values."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seed: int, split: str, indices: torch.Tensor, streams: int) -> torch.Tensor:
    """Uniforms in ``[0, 1)``, shape ``(len(indices), streams)``, each a function of (seed, split, index, stream)."""
    key = _hash32(torch.tensor([(seed * 0x9E3779B1 + _SPLITS[split]) & _MASK], dtype=torch.int64))
    per_image = _hash32(indices.long() ^ key)  # [B]
    per_stream = _hash32(torch.arange(streams, dtype=torch.int64) * 0x9E3779B9 + 0x632BE5AB)  # [S]
    bits = _hash32(per_image[:, None] + per_stream[None, :])  # [B, S]
    return (bits >> 8).to(torch.float64) / float(1 << 24)


# --------------------------------------------------------------------------------------------- rendering


def _place_exact(items: torch.Tensor, top: torch.Tensor, left: torch.Tensor, canvas: int) -> torch.Tensor:
    """Paste ``(B, 28, 28)`` items at whole-pixel offsets onto a zero ``(B, canvas, canvas)`` canvas."""
    b = items.shape[0]
    out = torch.zeros(b, canvas, canvas, dtype=items.dtype)
    ar = torch.arange(ITEM)
    rows = (top[:, None] + ar)[:, :, None]  # [B, 28, 1]
    cols = (left[:, None] + ar)[:, None, :]  # [B, 1, 28]
    out[torch.arange(b)[:, None, None], rows, cols] = items
    return out


def _place_warped(items: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, cx: torch.Tensor,
                  cy: torch.Tensor, canvas: int) -> torch.Tensor:
    """Rotate by ``angle`` (radians), scale and centre each item at ``(cx, cy)`` (pixels); bilinear, zeros outside."""
    cos, sin = angle.cos(), angle.sin()
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R^-1, [B, 2, 2]
    half = ITEM / 2
    # canvas normalised x_n -> canvas pixels p = (x_n + 1) * canvas / 2; item pixels q = R^-1 (p - c) / s + 14;
    # item normalised x_s = q / 14 - 1 = R^-1 (x_n * canvas / 2 + canvas / 2 - c) / (14 s)
    lin = inv * (canvas / 2) / (half * scale)[:, None, None]  # [B, 2, 2]
    shift = (inv @ torch.stack([canvas / 2 - cx, canvas / 2 - cy], -1)[..., None])[..., 0] / (half * scale)[:, None]
    theta = torch.cat([lin, shift[..., None]], -1).float()  # [B, 2, 3]
    grid = F.affine_grid(theta, [items.shape[0], 1, canvas, canvas], align_corners=False)
    out = F.grid_sample(items[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].round_().clamp_(0, 255).to(torch.uint8)


def _clutter(source: torch.Tensor, indices: torch.Tensor, u: torch.Tensor, spec: ClutterSpec) -> torch.Tensor:
    """``(B, canvas, canvas)`` uint8 canvas holding the clutter pieces, overlaps combined by maximum."""
    b, n, k, c = len(indices), spec.clutter, spec.clutter_size, spec.canvas
    out = torch.zeros(b, c * c, dtype=torch.int16)
    if n == 0:
        return out.view(b, c, c).to(torch.uint8)
    u = u.view(b, n, _PIECE_STREAMS)
    count = source.shape[0]
    other = (u[..., 0] * (count - 1)).long()  # another image of the split: skip the item's own index
    other = other + (other >= indices[:, None]).long()
    crop_y, crop_x = ((u[..., 1:3] * (ITEM - k + 1)).long()).unbind(-1)
    put_y, put_x = ((u[..., 3:5] * (c - k + 1)).long()).unbind(-1)
    ar = torch.arange(k)
    pieces = source[other[..., None, None], (crop_y[..., None, None] + ar[:, None]),
                    (crop_x[..., None, None] + ar[None, :])]  # [B, n, k, k]
    where = (put_y[..., None, None] + ar[:, None]) * c + (put_x[..., None, None] + ar[None, :])  # [B, n, k, k]
    out.scatter_reduce_(1, where.reshape(b, -1), pieces.reshape(b, -1).to(torch.int16), "amax")
    return out.view(b, c, c).to(torch.uint8)


def item_geometry(u: torch.Tensor, spec: ClutterSpec) -> tuple[torch.Tensor, ...]:
    """Rotation (radians), scale and centre ``(x, y)`` in pixels of each distorted item, from its uniforms.

    The centre keeps the item's rotated, scaled square (with the one-pixel rim that bilinear sampling can
    light) inside the canvas.
    """
    (a_lo, a_hi), (s_lo, s_hi) = spec.rotation, spec.scale
    angle = torch.deg2rad(a_lo + (a_hi - a_lo) * u[:, 0])
    scale = s_lo + (s_hi - s_lo) * u[:, 1]
    half = (ITEM + 1) / 2 * scale * (angle.cos().abs() + angle.sin().abs())  # [B]
    cx = half + (spec.canvas - 2 * half) * u[:, 2]
    cy = half + (spec.canvas - 2 * half) * u[:, 3]
    return angle, scale, cx, cy


def _exact_offsets(u: torch.Tensor, spec: ClutterSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Top and left pixel of each undistorted item (pasted whole at a whole-pixel offset)."""
    top = (u[:, 3] * (spec.canvas - ITEM + 1)).long()
    left = (u[:, 2] * (spec.canvas - ITEM + 1)).long()
    return top, left


def item_centres(indices: torch.Tensor, spec: ClutterSpec, split: str = "train") -> torch.Tensor:
    """Where the item of each cluttered image sits: its centre ``(x, y)`` in pixels, float64 ``(B, 2)``.

    Pixel ``j`` covers ``[j, j + 1)``, so a canvas of side ``c`` has its centre at ``c / 2``; an undistorted
    item pasted at column ``left`` has its centre at ``left + 14``. The same random numbers as :func:`render`,
    so this is where :func:`render` put the item (the truth a localising model is measured against).
    """
    if split not in _SPLITS:
        raise ValueError(f"cluttered-fashion-mnist: split must be 'train' or 'test', got {split!r}")
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    u = uniforms(spec.seed, split, indices, _ITEM_STREAMS)  # the item's streams come first in render's too
    if spec.distorted:
        _, _, cx, cy = item_geometry(u, spec)
        return torch.stack([cx, cy], -1).double()
    top, left = _exact_offsets(u, spec)
    return torch.stack([left, top], -1).double() + ITEM / 2


def render(source: torch.Tensor, indices: torch.Tensor, spec: ClutterSpec, split: str = "train") -> torch.Tensor:
    """The cluttered images ``indices`` of one split, as uint8 ``(B, 1, canvas, canvas)``.

    Args:
        source: the split's uint8 images, ``(N, 28, 28)``; image ``i`` is the item of cluttered image ``i``.
        indices: int64 ``(B,)`` image indices in ``0..N-1``.
        spec: canvas, clutter and distortion.
        split: ``"train"`` or ``"test"`` (part of the random key, so the two splits get different positions).

    Returns:
        uint8 ``(B, 1, canvas, canvas)``: the item (rotated / scaled when ``spec`` says so) at a random
        position fully inside the canvas, and ``spec.clutter`` pieces of ``spec.clutter_size`` squared pixels
        from other images of ``source`` at random positions; where they overlap, the brighter pixel wins.
    """
    if split not in _SPLITS:
        raise ValueError(f"cluttered-fashion-mnist: split must be 'train' or 'test', got {split!r}")
    if source.dim() != 3 or tuple(source.shape[1:]) != (ITEM, ITEM):
        raise ValueError(f"cluttered-fashion-mnist: source images must be (N, {ITEM}, {ITEM}), "
                         f"got {tuple(source.shape)}")
    if spec.clutter and source.shape[0] < 2:
        raise ValueError("cluttered-fashion-mnist: clutter needs at least 2 source images")
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    streams = _FIRST_PIECE_STREAM + _PIECE_STREAMS * spec.clutter
    u = uniforms(spec.seed, split, indices, streams)  # [B, S]
    items = source[indices]  # [B, 28, 28]
    if spec.distorted:
        canvas = _place_warped(items, *item_geometry(u, spec), spec.canvas)
    else:
        top, left = _exact_offsets(u, spec)
        canvas = _place_exact(items, top, left, spec.canvas)
    clutter = _clutter(source, indices, u[:, _FIRST_PIECE_STREAM:], spec)
    return torch.maximum(canvas, clutter)[:, None]


class ClutteredImages:
    """The images of a cluttered split, made when indexed; looks like a uint8 ``(N, 1, canvas, canvas)`` tensor.

    Indexing with an index tensor or list (what a batch loader does) returns the rendered uint8 batch;
    slicing returns another lazy view (what ``subset`` and per-rank sharding do), so nothing is rendered
    until a batch is asked for.

    Args:
        source: the split's uint8 images ``(N, 28, 28)``.
        spec: canvas, clutter and distortion.
        split: ``"train"`` or ``"test"``.
        indices: the source indices this view holds (default all).
    """

    def __init__(self, source: torch.Tensor, spec: ClutterSpec, split: str, indices: torch.Tensor | None = None):
        self.source, self.spec, self.split = source, spec, split
        self.indices = torch.arange(source.shape[0]) if indices is None else indices

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.indices), 1, self.spec.canvas, self.spec.canvas))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> torch.Tensor | ClutteredImages:
        if isinstance(key, slice):
            return ClutteredImages(self.source, self.spec, self.split, self.indices[key])
        if isinstance(key, int):
            return render(self.source, self.indices[key:key + 1] if key >= 0 else self.indices[[key]], self.spec,
                          self.split)[0]
        return render(self.source, self.indices[torch.as_tensor(key, dtype=torch.int64)], self.spec, self.split)

    def select(self, index: torch.Tensor) -> ClutteredImages:
        """A lazy view of the images at ``index`` (int64 indices into this view; nothing is rendered)."""
        return ClutteredImages(self.source, self.spec, self.split, self.indices[index])

    def item_centres(self) -> torch.Tensor:
        """Centre ``(x, y)`` in pixels of each image's item, float64 ``(N, 2)`` (:func:`item_centres`)."""
        return item_centres(self.indices, self.spec, self.split)

    def materialize(self, chunk: int = 4096) -> torch.Tensor:
        """All images as one uint8 tensor (rendered in chunks)."""
        if not len(self):
            return torch.zeros(self.shape, dtype=torch.uint8)
        return torch.cat([render(self.source, self.indices[i:i + chunk], self.spec, self.split)
                          for i in range(0, len(self), chunk)])


#: images rendered to estimate the normalisation of the cluttered set
STATS_SAMPLE = 2048


@register_dataset("cluttered-fashion-mnist", task="classification", channels=1, classes=CLASSES,
                  takes_options=True)
class ClutteredFashionMNIST(ClassificationSource):
    """Cluttered Fashion-MNIST: each Fashion-MNIST item on a larger canvas among pieces of others (see module doc).

    Options (``dataset_kwargs``) are :class:`ClutterSpec`'s fields; the canvas is 60x60 by default. Images are
    rendered when a batch asks for them; the normalisation comes from the first 2,048 training images.
    """

    def load(self, data_dir, *, image_size, memory_budget_mb, options):
        spec = ClutterSpec.from_options(options)
        tr_src, tr_y = load_fashion_mnist("train", data_dir)
        te_src, te_y = load_fashion_mnist("test", data_dir)
        tr_x, te_x = ClutteredImages(tr_src, spec, "train"), ClutteredImages(te_src, spec, "test")
        mean, std = image_stats(tr_x[torch.arange(min(len(tr_x), STATS_SAMPLE))])
        classes = list(CLASSES)
        return ImageData(tr_x, tr_y, classes, mean, std), ImageData(te_x, te_y, classes, mean, std)

    def shape(self, image_size, options):
        canvas = ClutterSpec.from_options(options).canvas
        return 1, canvas, canvas
