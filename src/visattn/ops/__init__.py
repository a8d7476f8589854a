"""The heavy kernels behind the quadratic modules, in pure PyTorch (see each file's docstring)."""

from .attention import attention_weights, blocked_attention, default_block_size, plain_attention, softmax_attention
from .precision import compute_dtype

__all__ = ["attention_weights", "blocked_attention", "compute_dtype", "default_block_size", "plain_attention",
           "softmax_attention"]
