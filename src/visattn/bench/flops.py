"""Operation counts of one forward: matmul/conv FLOPs, and an estimate of the element-wise work.

Two numbers, reported separately because they are not equally exact:

* ``flops``: counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add of every
  matmul, convolution and fused attention kernel), with formulas added for the CPU's fused
  ``scaled_dot_product_attention`` kernels, which PyTorch's table does not cover.
* ``elementwise_ops``: an estimate, stated as such: each other aten op (activations, normalisation,
  softmax, products with the attention weights, reductions, interpolation...) counts one operation per
  element of the largest tensor it reads or writes, and a windowed pooling ``k_h * k_w`` operations per
  output element. Data movement (views, copies, concatenation, padding, indexing) and tensor creation
  count zero. A sigmoid or a softmax costs several instructions per element, so this is a lower bound
  in instructions but the right order of magnitude in memory traffic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_backward_flop_count, sdpa_flop_count

__all__ = ["count_ops", "FLOPS_DEFINITION", "ELEMENTWISE_DEFINITION"]

FLOPS_DEFINITION = ("counted: torch.utils.flop_counter.FlopCounterMode over one forward of the batch (eval mode), "
                    "2 FLOPs per multiply-add of matmuls, convolutions and fused attention")
ELEMENTWISE_DEFINITION = ("estimated: one operation per element of the largest tensor read or written by each other "
                          "aten op (k_h*k_w per output for windowed pooling); views, copies, concatenation, padding, "
                          "indexing and tensor creation count zero")

aten = torch.ops.aten


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: fused kernels missing from PyTorch's FLOP table
_EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}

#: ops that only move, view or create data: zero element-wise operations
_MOVEMENT = frozenset("""
    view _unsafe_view reshape _reshape_alias view_as permute expand expand_as t transpose unsqueeze squeeze
    slice select as_strided alias detach clone copy_ _to_copy contiguous cat stack split split_with_sizes
    unbind chunk narrow movedim diagonal unfold im2col flip roll repeat constant_pad_nd pad reflection_pad1d
    reflection_pad2d replication_pad1d replication_pad2d index index_select gather take index_put index_put_
    scatter _unsafe_index _unsafe_index_put slice_scatter select_scatter diagonal_scatter as_strided_scatter
    pixel_shuffle pixel_unshuffle channel_shuffle empty empty_like empty_strided new_empty new_empty_strided
    zeros zeros_like new_zeros ones ones_like new_ones eye full full_like new_full fill_ zero_ arange
    scalar_tensor lift_fresh lift_fresh_copy _local_scalar_dense resize_ set_ rand randn rand_like randn_like
    normal_ uniform_ bernoulli_ tril triu
""".split())

#: windowed pooling: kernel size is the second positional argument
_WINDOWED = frozenset("avg_pool1d avg_pool2d avg_pool3d max_pool2d_with_indices max_pool3d_with_indices".split())


def _name(func) -> str:
    return func._overloadpacket._qualified_op_name.split("::")[-1]


def _numels(tree) -> list[int]:
    return [t.numel() for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class _ElementwiseCounter(TorchDispatchMode):
    """Adds the estimated element-wise operations of every aten op that is not a matmul/conv."""

    def __init__(self, matmul_ops) -> None:
        super().__init__()
        self.matmul_ops = matmul_ops
        self.total = 0
        self.by_op: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket in self.matmul_ops:
            return func(*args, **kwargs)
        with self:  # a composite op: count its parts (as FlopCounterMode does)
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        out = func(*args, **kwargs)
        name = _name(func)
        outs = _numels(out)
        if not outs or name in _MOVEMENT:
            return out
        if name in _WINDOWED:
            kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
            kernel = [int(k) for k in kernel] if isinstance(kernel, (list, tuple)) else [int(kernel)]
            if len(kernel) == 1:
                kernel = kernel * (2 if "2d" in name else 3 if "3d" in name else 1)
            ops = outs[0] * math.prod(kernel)
        else:
            ops = max(outs + _numels((args, kwargs)))
        self.total += ops
        self.by_op[name] += ops
        return out


def count_ops(module: nn.Module, inputs: Sequence[torch.Tensor]) -> dict:
    """Count one forward of ``module`` on ``inputs`` in eval mode.

    Returns:
        ``{"flops": int, "elementwise_ops": int, "elementwise_by_op": {aten op: ops}}`` for the whole batch.

    Example:
        >>> conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        >>> count_ops(conv, (torch.randn(1, 8, 4, 4),))["flops"] == 2 * 8 * 8 * 9 * 16
        True
    """
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    elementwise = _ElementwiseCounter(set(flop_registry) | set(_EXTRA_FORMULAS))
    try:
        # the element-wise counter is the outer mode: it sees the ops FlopCounterMode runs, after that
        # mode has decomposed composite ops into the ones it counts
        with torch.inference_mode(), elementwise, counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return {"flops": int(counter.get_total_flops()), "elementwise_ops": int(elementwise.total),
            "elementwise_by_op": dict(elementwise.by_op.most_common())}
