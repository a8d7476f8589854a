"""The heavy kernels behind the quadratic modules, in pure PyTorch (see each file's docstring)."""

from .attention import attention_weights, blocked_attention, default_block_size, plain_attention, softmax_attention

__all__ = ["attention_weights", "blocked_attention", "default_block_size", "plain_attention", "softmax_attention"]
