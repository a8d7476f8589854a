"""Turn a module's recorded weights, whatever their shape, into things that can be drawn.

Every tensor is batch-first. :func:`interpret` reads its shape (and the module's role and input size)
and returns pictures of one of these kinds:

- ``"channel"``: channel weights ``(B, C)``, from ``(B, C)``, ``(B, C, 1, 1)`` (SE, ECA, CBAM's channel
  gate...) or ``(B, M, C, 1, 1)`` (SK's branch weights: one picture per branch);
- ``"spatial"``: a map ``(B, h, w)`` from ``(B, k, h, w)`` (mean over the k channels; the max when the
  mean is constant, as for responsibilities that sum to 1 over k), from ``(B, ..., k, h, w)``, or from a
  flattened ``(B, 1, HW)``;
- ``"context"``: the attention of one query position over the key positions, ``(B, h, w)``, for context
  modules: criss-cross weights ``(B, H + W, H, W)``, position-indexed maps ``(B, ..., h*w, h, w)`` (PSA),
  and attention matrices ``(B, [heads,] N_q, N_k)`` over the input grid, or over pooled / sub-sampled
  grids (non-local's sub-sampled keys, ASP-OC's pooled grid);
- ``"matrix"``: a square ``(B, n, n)`` matrix that is not over positions (DANet's channel attention, which the
  module declares as over channels: its ``attention_map_axes``);
- ``"transform"``: an affine ``theta`` ``(B, 2, 3)`` (spatial transformer).

A shape that fits none of these gives no picture and a reason, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Picture", "interpret", "query_cell", "reduce_channels", "KINDS"]

KINDS = ("channel", "spatial", "context", "matrix", "transform")


@dataclass
class Picture:
    """Something to draw: ``kind`` (one of :data:`KINDS`), batch-first ``data`` and how it was derived."""

    kind: str
    data: torch.Tensor
    note: str = ""


def query_cell(query: tuple[float, float], h: int, w: int) -> tuple[int, int]:
    """Grid cell ``(row, col)`` of an ``h x w`` grid holding the point at fractional position ``query``.

    ``query`` is ``((y + 0.5) / H, (x + 0.5) / W)`` for pixel ``(y, x)`` of an ``H x W`` image.
    """
    return min(h - 1, max(0, int(query[0] * h))), min(w - 1, max(0, int(query[1] * w)))


def reduce_channels(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``(B, k, h, w) -> (B, h, w)``: the mean over k, or the max when the mean is the same everywhere."""
    k = t.shape[1]
    if k == 1:
        return t[:, 0], ""
    mean = t.mean(1)
    spread = (mean.flatten(1).amax(1) - mean.flatten(1).amin(1)).max()
    if spread <= 1e-6 * max(1.0, float(mean.abs().max())) and t.shape[-2] * t.shape[-1] > 1:
        peak = t.amax(1)
        if float((peak.flatten(1).amax(1) - peak.flatten(1).amin(1)).max()) > 1e-6:
            return peak, f"max over {k} channels (their mean is constant)"
    return mean, f"mean over {k} channels"


def _channel(t: torch.Tensor) -> list[Picture] | None:
    b, s = t.shape[0], tuple(t.shape[1:])
    if len(s) == 1:
        return [Picture("channel", t, f"{s[0]} channels")]
    if len(s) >= 3 and s[-2:] == (1, 1):
        c = s[-3]
        parts = t.reshape(b, -1, c)  # [B, M, C]
        m = parts.shape[1]
        if m == 1:
            return [Picture("channel", parts[:, 0], f"{c} channels")]
        return [Picture("channel", parts[:, i], f"branch {i + 1} of {m}, {c} channels") for i in range(m)]
    return None


def _criss_cross(t: torch.Tensor, query: tuple[float, float]) -> list[Picture] | None:
    s = tuple(t.shape[1:])
    if len(s) != 3 or s[0] != s[1] + s[2]:
        return None
    h, w = s[1], s[2]
    diag = t[:, torch.arange(h), torch.arange(h), :]  # [B, H, W]: the column part's self entries
    if not bool((diag == 0).all()):
        return None  # not the criss-cross layout (its self position is counted in the row part only)
    qy, qx = query_cell(query, h, w)
    m = torch.zeros(t.shape[0], h, w, dtype=t.dtype)
    m[:, :, qx] = t[:, :h, qy, qx]  # column keys (g, qx)
    m[:, qy, :] += t[:, h:, qy, qx]  # row keys (qy, g)
    return [Picture("context", m, f"criss-cross weights of query cell ({qy}, {qx}) of {h}x{w}")]


def _indexed_by_position(t: torch.Tensor, query: tuple[float, float]) -> list[Picture] | None:
    """``(B, ..., h*w, ..., h, w)``: the last two dims are the query position, another dim the key position."""
    s = tuple(t.shape[1:])
    if len(s) < 3:
        return None
    h, w = s[-2:]
    dims = [d for d, n in enumerate(s[:-2]) if n == h * w and h * w > 1]
    if not dims:
        return None
    qy, qx = query_cell(query, h, w)
    v = t[..., qy, qx]  # [B, *s[:-2]]
    v = v.movedim(dims[-1] + 1, -1).reshape(t.shape[0], -1, h, w)  # [B, R, h, w]
    note = f"query cell ({qy}, {qx}) of {h}x{w}"
    if v.shape[1] == 1:
        return [Picture("context", v[:, 0], note)]
    if v.shape[1] <= 4:
        return [Picture("context", v[:, r], f"{note}, part {r + 1} of {v.shape[1]}") for r in range(v.shape[1])]
    return [Picture("context", v.mean(1), f"{note}, mean over {v.shape[1]}")]


def _key_grid(n: int, h: int, w: int) -> tuple[int, int] | None:
    if n == h * w:
        return h, w
    for f in range(2, 9):
        for hh, ww in ((math.ceil(h / f), math.ceil(w / f)), (h // f, w // f)):
            if hh * ww == n and hh > 0:
                return hh, ww
    return None


def _matrix_over_positions(t: torch.Tensor, in_hw: tuple[int, int], query: tuple[float, float], *,
                           pooled_queries: bool) -> list[Picture] | None:
    """``(B, [heads,] N_q, N_k)``: queries on the input grid (or a pooled one), keys on a (sub-sampled) grid."""
    s = tuple(t.shape[1:])
    h, w = in_hw
    if len(s) < 2 or h * w <= 1:
        return None
    q_grid = (h, w) if s[-2] == h * w else (_key_grid(s[-2], h, w) if pooled_queries else None)
    k_grid = _key_grid(s[-1], h, w)
    if q_grid is None or k_grid is None:
        return None
    qy, qx = query_cell(query, *q_grid)
    rows = t[..., qy * q_grid[1] + qx, :].reshape(t.shape[0], -1, *k_grid)  # [B, heads, h', w']
    note = f"query cell ({qy}, {qx}) of {q_grid[0]}x{q_grid[1]}, keys on {k_grid[0]}x{k_grid[1]}"
    if rows.shape[1] > 1:
        note += f", mean over {rows.shape[1]} heads"
    return [Picture("context", rows.mean(1), note)]


def interpret(t: torch.Tensor, *, in_hw: tuple[int, int], channels: int | None = None, role: str = "plugin",
              query: tuple[float, float] = (0.5, 0.5), axes: str | None = None) -> tuple[list[Picture], str]:
    """Pictures of the weights ``t`` of a module whose input grid is ``in_hw``; and a reason when there are none.

    Args:
        t: batch-first weights, as a ``gate`` / ``attend`` step or ``attention_map`` gives them.
        in_hw: ``(H, W)`` of the module's input.
        channels: the module's input channels (tells a ``(B, C, C)`` channel attention from attention over
            positions on a pooled grid of ``C`` cells; a square matrix over the input grid's ``HW`` positions
            is taken as positional even when ``HW == C``).
        role: the module's registry role; ``"context"`` looks for query-indexed attention first.
        query: fractional query position ``((y + 0.5) / H_img, (x + 0.5) / W_img)`` for context modules.
        axes: what the module declares these weights to be over (its ``attention_map_axes``): ``"channels"``
            (channel weights, or a channel-by-channel matrix: drawn as a ``"matrix"``, never over the image),
            ``"positions"``, or None (read from the shape; a square ``(B, n, n)`` matrix with ``n`` equal to
            both the channel count and the number of positions is then ambiguous and not drawn).

    Raises:
        ValueError: ``axes`` not one of ``"positions"``, ``"channels"`` or None.
    """
    if axes not in (None, "positions", "channels"):
        raise ValueError(f"interpret: axes must be 'positions', 'channels' or None, got {axes!r}")
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        return [], f"not a batch of weights ({type(t).__name__} {tuple(getattr(t, 'shape', ()))})"
    t = t.detach().float().cpu()
    if not bool(torch.isfinite(t).all()):
        return [], f"non-finite values in {tuple(t.shape)}"
    s = tuple(t.shape[1:])
    if role == "transform" and s == (2, 3):
        return [Picture("transform", t, "affine theta")], ""
    square = len(s) == 2 and s[0] == s[1]
    if axes == "channels":
        pictures = _channel(t)
        if pictures:
            return pictures, ""
        if square:
            return [Picture("matrix", t, f"{s[0]}x{s[1]} channel-by-channel matrix")], ""
        return [], f"no picture for channel weights of shape {tuple(t.shape)}"
    if axes is None:
        pictures = _channel(t)
        if pictures:
            return pictures, ""
    h, w = in_hw
    if axes is None and square and s[0] == channels == h * w and h * w > 1:
        return [], (f"a {s[0]}x{s[1]} matrix where {s[0]} is both the channel count and the number of positions "
                    f"({h}x{w}), and the module does not declare which (attention_map_axes): not drawn")
    if role == "context":
        attempt = (_criss_cross(t, query) or _indexed_by_position(t, query)
                   or _matrix_over_positions(t, in_hw, query, pooled_queries=False))
        if not attempt and (axes == "positions" or not (square and s[0] == channels)):
            attempt = _matrix_over_positions(t, in_hw, query, pooled_queries=True)
        if attempt:
            return attempt, ""
    if len(s) == 2 and s[0] == 1 and s[1] == h * w:  # (B, 1, HW): a flattened map over the input grid
        return [Picture("spatial", t.reshape(-1, h, w), "")], ""
    if square:
        return [Picture("matrix", t, f"{s[0]}x{s[1]} matrix" + (" over positions" if axes == "positions" else ""))], ""
    if len(s) >= 3:
        m, note = reduce_channels(t.reshape(t.shape[0], -1, *s[-2:]))
        return [Picture("spatial", m, note)], ""
    return [], f"no picture for weights of shape {tuple(t.shape)}"
