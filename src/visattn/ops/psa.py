"""PSANet's point-wise spatial attention: the over-complete mask re-indexed without a scatter.

At every position ``i = (h, w)`` of an ``H x W`` map, PSANet predicts an over-complete mask of
``(2H - 1) x (2W - 1)`` values centred on ``i``; the ``H x W`` window of it that overlaps the feature map
holds one weight for every position ``j``, at mask index ``(j - i) + (H - 1, W - 1)``. The reference
Caffe / CUDA ops (``PSAForward_buffer_mask_collect`` / ``_distribute`` in the official code, ``psa_mask`` in
``hszhao/semseg``) copy those windows into an ``(HW) x (HW)`` buffer with loops:

- collect: ``buffer[j, i] = mask[(j - i) + c, i]``: the weights predicted at ``i`` tell how much ``i``
  collects from every ``j``;
- distribute: ``buffer[i, j] = mask[(j - i) + c, i]``: the weights predicted at ``i`` tell how much ``i``
  distributes to every ``j``;

then the official module soft-maxes the buffer over its first (source) index and aggregates
``out[:, t] = sum_s x[:, s] buffer[s, t]``.

Both buffers are the same matrix up to a transpose, ``G[i, j] = mask[(j - i) + c, i]`` (collect buffer
``G^T``, distribute buffer ``G``), and ``G`` is a strided view of the mask stored channels-last,
``(B, H, W, 2H-1, 2W-1)``: with the mask's strides ``(sB, sH, sW, sMH, 1)`` (``sMH = 2W - 1``),

    ``G[b, h, w, h', w'] = mask[b, h, w, h' - h + H - 1, w' - w + W - 1]``
    at offset ``(H-1) sMH + (W-1)`` with strides ``(sB, sH - sMH, sW - 1, sMH, 1)``,

all positive. :func:`psa_gather` takes that ``as_strided`` view and copies it once into ``(B, HW, HW)``:
no index tensors, no scatter; its backward (a custom autograd function) copies the gradient back into the
same view of a zero mask gradient, each entry written once (deterministic on every device, no extra
mask-sized buffers); it works in any floating dtype. Measured against a scatter formulation in
``benchmarks/context_cc_psa.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .precision import compute_dtype

__all__ = ["psa_gather", "psa_mask", "psa_attention", "MODES"]

#: The two re-indexings of the over-complete mask.
MODES = ("collect", "distribute")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"psa: mode must be one of {MODES}, got {mode!r}")


def _window_view(mask: torch.Tensor) -> torch.Tensor:
    """``G`` as a strided view ``(B, H, W, H, W)`` of a contiguous channels-last mask ``(B, H, W, M)``."""
    b, h, w, m = mask.shape
    mw = 2 * w - 1
    # Start the view at the centre (H-1, W-1) of position (0, 0)'s mask: slicing the flat tensor moves the
    # storage offset, which as_strided then keeps (no storage_offset() call, so it traces under compile).
    start = mask.view(-1)[(h - 1) * mw + (w - 1):]
    return start.as_strided((b, h, w, h, w), (h * w * m, w * m - mw, m - 1, mw, 1))


class _PSAGather(torch.autograd.Function):
    """``G`` from the mask: one strided copy forward; backward, the gradient copied back into the windows.

    The backward fills a zero mask gradient and copies into its window view: each entry is written at most
    once, no accumulation, so it is deterministic on every device.
    """

    @staticmethod
    def forward(mask: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = mask.shape
        return _window_view(mask).reshape(b, h * w, h * w)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.mask_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = ctx.mask_shape
        grad_mask = grad.new_zeros(ctx.mask_shape)
        _window_view(grad_mask).copy_(grad.view(b, h, w, h, w))
        return grad_mask


def psa_gather(mask: torch.Tensor) -> torch.Tensor:
    r"""The matrix :math:`G[b, i, j] = \mathrm{mask}[b, i, (j - i) + (H - 1, W - 1)]` over positions i, j.

    Args:
        mask: over-complete masks, channels-last ``(B, H, W, (2H-1) * (2W-1))``: at each position
            ``(h, w)``, the ``(2H-1) x (2W-1)`` mask in row-major order (the official conv's channel order).

    Returns:
        ``(B, H*W, H*W)``, contiguous: row ``i`` holds the weights predicted at position ``i`` for every
        position ``j`` (row-major ``h * W + w``). The official collect buffer is ``G^T``, the distribute
        buffer is ``G``.
    """
    _, h, w, m = mask.shape
    if m != (2 * h - 1) * (2 * w - 1):
        raise ValueError(f"psa_gather: expected (B, H, W, (2H-1)(2W-1)) = (B, {h}, {w}, {(2 * h - 1) * (2 * w - 1)}) "
                         f"masks, got {tuple(mask.shape)}")
    return _PSAGather.apply(mask.contiguous())


def psa_mask(mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The official ``psa_mask`` op (``hszhao/semseg``, ``lib/psa``): the buffer before the softmax.

    Args:
        mask: ``(B, (2H-1) * (2W-1), H, W)``, the adaptation conv's output (NCHW).
        mode: ``"collect"`` (the official ``psa_type`` 0) or ``"distribute"`` (1).

    Returns:
        ``(B, H*W, H, W)``: ``[b, s, t]`` (``t = (h, w)`` flattened into the last two dims) is the weight of
        source ``s`` for target ``t``, to be soft-maxed over ``s``.
    """
    _check_mode(mode)
    b, _, h, w = mask.shape
    g = psa_gather(mask.permute(0, 2, 3, 1))  # [B, HW, HW]
    buffer = g.transpose(1, 2) if mode == "collect" else g
    return buffer.reshape(b, h * w, h, w)


def psa_attention(mask: torch.Tensor, x: torch.Tensor, mode: str,
                  attend: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Point-wise spatial attention of one branch: re-index, softmax over sources, aggregate.

    Args:
        mask: channels-last ``(B, H, W, (2H-1) * (2W-1))`` over-complete masks.
        x: features ``(B, C, H, W)`` to aggregate.
        mode: ``"collect"`` or ``"distribute"``.
        attend: softmax module / function applied to ``G`` (a ``(B, HW, HW)`` float32 / float64 tensor): over
            the last dim for collect (rows are targets), over dim 1 for distribute (rows are sources).
            Default: :func:`torch.softmax` over that dim.

    Returns:
        ``(B, C, H, W)``: ``out[:, t] = sum_s x[:, s] a[s, t]`` with ``a`` the soft-maxed official buffer.
    """
    _check_mode(mode)
    b, c, h, w = x.shape
    cdt = compute_dtype(mask)
    g = psa_gather(mask).to(cdt)  # [B, HW, HW]
    if attend is None:
        a = torch.softmax(g, dim=-1 if mode == "collect" else 1)
    else:
        a = attend(g)
    a = a.to(x.dtype)
    # collect: a[t, s] (rows are targets), out = x a^T; distribute: a[s, t], out = x a. No copy of a either way.
    a = a.transpose(1, 2) if mode == "collect" else a
    return torch.bmm(x.reshape(b, c, h * w), a).view(b, c, h, w)
