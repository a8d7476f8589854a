r"""A spatial transformer's two pictures: where its sampling window lies on the input, and what it outputs.

The transformer's :math:`\theta` maps the output's normalised coordinates to the input's (``F.affine_grid``'s
convention, ``align_corners=False``): normalised :math:`x = -1` is the left edge of pixel 0 and :math:`x = 1`
the right edge of pixel :math:`W - 1`, so a normalised point is at pixel coordinate
:math:`p_x = (x + 1) / 2 \cdot W`, :math:`p_y = (y + 1) / 2 \cdot H`. The output's corners
:math:`(\pm 1, \pm 1)` mapped through :math:`\theta` outline the quadrilateral of the input it reads (its
sampling window); the window's centre is where the output's centre :math:`(0, 0)` reads,
:math:`(\theta_{:, 2} + 1) / 2 \cdot (W, H)` pixels, and its area is :math:`|\det \theta_{:, :2}|` of the
input's. These are the conventions of :mod:`visattn.train.localisation`, which measures the same window
against where the items are.

Everything here needs only torch: the outline is rasterised as the pixels near each edge.

Example:
    >>> theta = torch.tensor([[0.5, 0.0, 0.25], [0.0, 0.5, -0.25]])  # half the size, right of and above the centre
    >>> sampling_window(theta, (40, 60)).tolist()  # (x, y) of the output's top-left, top-right, ... corners
    [[22.5, 5.0], [52.5, 5.0], [52.5, 25.0], [22.5, 25.0]]
    >>> window_centre(theta, (40, 60)).tolist(), window_area(theta).item()
    ([37.5, 15.0], 0.25)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .pictures import ModulePicture
from .render import display_scale, image_rgb

__all__ = ["OUTPUT_CORNERS", "sampling_window", "window_centre", "window_area", "window_outside", "draw_outline",
           "transformed_output", "transform_pictures"]

#: The output's corners in normalised coordinates (x, y): top-left, top-right, bottom-right, bottom-left.
OUTPUT_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))

#: A window corner further than this many pixels outside the input counts as outside.
OUTSIDE_TOLERANCE_PX = 1e-3

# What a sampler reads outside the input, by padding_mode.
_OUTSIDE_READS = {"zeros": "reads zeros", "border": "repeats the input's edge pixels",
                  "reflection": "reads the input mirrored at its edges"}


def _check(name: str, theta: torch.Tensor, size: Sequence[int]) -> tuple[int, int]:
    if not isinstance(theta, torch.Tensor) or theta.dim() < 2 or tuple(theta.shape[-2:]) != (2, 3):
        raise ValueError(f"{name}: theta must be (..., 2, 3), got {tuple(getattr(theta, 'shape', ()))}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name}: size must be the input's (H, W), two positive numbers, got {tuple(size)}")
    return int(size[0]), int(size[1])


def sampling_window(theta: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The corners of the input region the transformer's output reads, in the input's pixel coordinates.

    Args:
        theta: affine transforms mapping the output's normalised coordinates to the input's.
        size: the input's ``(H, W)`` in pixels.

    Returns:
        ``(x, y)`` pixel coordinates (``x = 0`` the left edge of the input, ``x = W`` its right edge) of the
        output's corners :data:`OUTPUT_CORNERS`, in that order; float64. A corner may lie outside
        ``[0, W] x [0, H]``.

    Raises:
        ValueError: theta not ``(..., 2, 3)``, or a size that is not two positive numbers.

    Shape:
        - theta: :math:`(2, 3)` or :math:`(B, 2, 3)`
        - Output: :math:`(4, 2)` or :math:`(B, 4, 2)`
    """
    h, w = _check("sampling_window", theta, size)
    t = theta.detach().double().cpu()
    corners = torch.tensor(OUTPUT_CORNERS, dtype=torch.float64)  # [4, 2]
    normalised = corners @ t[..., :2].transpose(-1, -2) + t[..., None, :, 2]  # [..., 4, 2]
    return (normalised + 1) / 2 * torch.tensor([w, h], dtype=torch.float64)


def window_centre(theta: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    r"""The window's centre ``(x, y)`` in pixels, :math:`(\theta_{:, 2} + 1) / 2 \cdot (W, H)`.

    Shape:
        - theta: :math:`(..., 2, 3)`
        - Output: :math:`(..., 2)`
    """
    h, w = _check("window_centre", theta, size)
    return (theta.detach().double().cpu()[..., 2] + 1) / 2 * torch.tensor([w, h], dtype=torch.float64)


def window_area(theta: torch.Tensor) -> torch.Tensor:
    r"""The window's area as a fraction of the input's, :math:`|\det \theta_{:, :2}|`.

    Shape:
        - theta: :math:`(..., 2, 3)`
        - Output: :math:`(...)`
    """
    _check("window_area", theta, (1, 1))
    t = theta.detach().double().cpu()
    return (t[..., 0, 0] * t[..., 1, 1] - t[..., 0, 1] * t[..., 1, 0]).abs()


def window_outside(corners: torch.Tensor, size: Sequence[int], tol: float = OUTSIDE_TOLERANCE_PX) -> bool:
    """Whether any corner ``(4, 2)`` of :func:`sampling_window` lies more than ``tol`` pixels outside the input.

    The window is convex, so it lies inside the input exactly when its corners do.
    """
    h, w = int(size[0]), int(size[1])
    x, y = corners[..., 0], corners[..., 1]
    return bool((x < -tol).any() or (x > w + tol).any() or (y < -tol).any() or (y > h + tol).any())


def draw_outline(rgb: torch.Tensor, corners: torch.Tensor, scale: int = 1, *, colour: Sequence[int] = (255, 0, 0),
                 width: float = 2.0) -> torch.Tensor:
    """``rgb`` with the closed polygon through ``corners`` drawn on it; what falls outside the picture is clipped.

    A pixel is on the outline when its centre is within ``width / 2`` pixels of an edge.

    Args:
        rgb: an image enlarged ``scale`` times (as :func:`~visattn.viz.render.overlay` draws it).
        corners: ``(x, y)`` of the polygon's corners in the image's own pixel coordinates (before enlarging).
        scale: how many picture pixels one image pixel is.
        colour: RGB of the outline.
        width: the outline's width in picture pixels.

    Returns:
        A new ``(H', W', 3)`` uint8 tensor.

    Shape:
        - rgb: :math:`(H', W', 3)`
        - corners: :math:`(K, 2)`
    """
    hh, ww = rgb.shape[:2]
    ys = (torch.arange(hh, dtype=torch.float64) + 0.5)[:, None]  # [H', 1] pixel centres
    xs = (torch.arange(ww, dtype=torch.float64) + 0.5)[None, :]  # [1, W']
    p = corners.detach().double().cpu() * scale  # [K, 2]
    near = torch.zeros(hh, ww, dtype=torch.bool)
    for (x0, y0), (x1, y1) in zip(p.tolist(), p.roll(-1, 0).tolist(), strict=True):
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = (((xs - x0) * dx + (ys - y0) * dy) / length2).clamp(0, 1) if length2 > 0 else torch.zeros(1, 1)
        near |= (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2 <= (width / 2) ** 2  # [H', W']
    out = rgb.clone()
    out[near] = torch.tensor(list(colour), dtype=out.dtype)
    return out


def transformed_output(module: nn.Module, x: torch.Tensor, theta: torch.Tensor,
                       size: Sequence[int] | None = None) -> torch.Tensor:
    """``x`` sampled through ``theta`` as the spatial transformer ``module`` samples its input.

    At the module's ``output_size`` (the input's size when it is None), with its ``mode`` and ``padding_mode``;
    on the module's own input and its own theta this is the module's output.

    Args:
        module: a spatial transformer (its ``output_size``, ``mode`` and ``padding_mode`` are read).
        x: what to sample.
        theta: the affine transforms, output to input normalised coordinates.
        size: ``(h, w)`` of the output, overriding the module's.

    Shape:
        - x: :math:`(B, C, H, W)`
        - theta: :math:`(B, 2, 3)`
        - Output: :math:`(B, C, h, w)`
    """
    if size is None:
        size = getattr(module, "output_size", None) or tuple(x.shape[-2:])
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], int(size[0]), int(size[1])], align_corners=False)
    return F.grid_sample(x, grid, mode=getattr(module, "mode", "bilinear"),
                         padding_mode=getattr(module, "padding_mode", "zeros"), align_corners=False)


def _is_normalised_image(x: torch.Tensor, image01: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> bool:
    """Whether the module's input ``x`` ``(C, H, W)`` is ``image01`` normalised with ``mean`` and ``std``."""
    if tuple(x.shape) != tuple(image01.shape) or mean.numel() not in (1, x.shape[0]):
        return False
    return bool(torch.allclose(x.float().cpu(), (image01 - mean) / std, atol=1e-4, rtol=1e-4))


def _enlarged(image01: torch.Tensor, s: int) -> torch.Tensor:
    """``(C, h, w)`` in [0, 1] -> ``(s*h, s*w, 3)`` uint8, each pixel an ``s x s`` block."""
    rgb = image_rgb(image01.clamp(0, 1)).repeat_interleave(s, 0).repeat_interleave(s, 1)
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8)


def transform_pictures(item: ModulePicture, b: int, image: torch.Tensor, *, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> list[tuple[str, torch.Tensor, str]]:
    """The two pictures of a spatial transformer for image ``b``: its sampling window, and its output.

    1. ``"sampling window"``: the input with the window's outline in red (clipped to the input), captioned
       with the window's centre, its area and theta, and whether part of it lies outside the input.
    2. ``"output"``: what the module produced for this image (``item.module_output``, its forward on the
       input it received), at its output size, each pixel drawn the size of an input pixel. When its input is
       the image normalised with ``mean`` and ``std`` (a transform at the network input), the output is
       de-normalised with them for display, so a zero it read outside the input shows as the data's mean
       colour; otherwise the image itself is sampled with the module's theta, output size, mode and padding
       (:func:`transformed_output`), and the caption says so.

    Args:
        item: a ``"transform"`` picture (``item.picture.data`` holds theta, ``(B, 2, 3)``).
        b: which image of the batch.
        image: ``(C, H, W)`` uint8 input image.
        mean: the per-channel mean the network's input was normalised with.
        std: the per-channel std the network's input was normalised with.

    Returns:
        ``[(name, rgb, caption), ...]``: ``rgb`` ``(H', W', 3)`` uint8.

    Raises:
        ValueError: ``item`` is not a transform picture.
    """
    if item.picture.kind != "transform":
        raise ValueError(f"transform_pictures: expected a 'transform' picture, got {item.picture.kind!r}")
    module = item.module
    theta = item.picture.data[b].double()  # [2, 3]
    h_in, w_in = image.shape[-2:]
    s = display_scale(h_in, w_in)
    image01 = image.float() / 255  # [C, H, W]
    seen = None if item.module_output is None else item.module_output[b].detach().float().cpu()  # [C, h, w]
    out_h, out_w = tuple(seen.shape[-2:]) if seen is not None else (
        getattr(module, "output_size", None) or (h_in, w_in))
    reads = _OUTSIDE_READS.get(getattr(module, "padding_mode", "zeros"), "reads its padding")

    corners = sampling_window(theta, (h_in, w_in))  # [4, 2]
    cx, cy = window_centre(theta, (h_in, w_in)).tolist()
    outside = window_outside(corners, (h_in, w_in))
    rows = "; ".join(", ".join(f"{v:.3g}" for v in row) for row in theta.tolist())
    window_text = (f"the sampling window of the transformer's {out_h}x{out_w} output on the {h_in}x{w_in} input (red "
                   f"outline): centre (x, y) = ({cx:.1f}, {cy:.1f}) px, area {window_area(theta).item():.3g} of the "
                   f"input's (|det theta[:, :2]|); theta = [{rows}]")
    if outside:
        window_text += f"; PART OF THE WINDOW LIES OUTSIDE THE INPUT (drawn clipped): the transformer {reads} there"
    window_rgb = draw_outline(_enlarged(image01, s), corners, s, width=max(2.0, s / 2))

    mean_t = std_t = None
    if mean is not None and std is not None:
        mean_t = torch.tensor(list(mean), dtype=torch.float32)[:, None, None]
        std_t = torch.tensor(list(std), dtype=torch.float32)[:, None, None]
    module_input = None if item.module_input is None else item.module_input[b]
    if seen is not None and module_input is not None and mean_t is not None \
            and _is_normalised_image(module_input, image01, mean_t, std_t):
        shown = seen * std_t + mean_t
        output_text = (f"the transformer's {out_h}x{out_w} output (what the network after it reads), "
                       "de-normalised with the data's mean and std; each output pixel drawn the size of an input "
                       "pixel")
        if outside:
            output_text += f"; where the window leaves the input, the transformer {reads}" + (
                " of the normalised input, drawn as the data's mean colour" if reads == _OUTSIDE_READS["zeros"] else "")
    else:
        shown = transformed_output(module, image01[None], theta[None].float(), (out_h, out_w))[0]
        output_text = (f"the input image sampled as the transformer samples its own input (theta, its {out_h}x{out_w} "
                       "output size, its mode and padding); each output pixel drawn the size of an input pixel")
        if outside:
            output_text += f"; where the window leaves the input, the transformer {reads}"
    return [("sampling window", window_rgb, window_text), ("output", _enlarged(shown, s), output_text)]
