"""Float64 reference pieces shared by the per-module tests.

Conv as a sum over kernel taps, pooling and resizing by their definitions, BN by its formula, random
BN state, and the check that a fast path and a plain path agree in forward and in every gradient.
"""

from __future__ import annotations

import torch
from torch import nn


def _channel_shape(v: torch.Tensor) -> tuple[int, ...]:
    return (1, -1) + (1,) * (v.dim() - 2)


def conv_ref(x, weight, bias=None, *, stride=1, dilation=1, groups=1):
    """Zero-padded 'same' conv (padding = dilation * (k - 1) / 2) as a sum over kernel taps, per group (einsum)."""
    b, c, h, w = x.shape
    o, cg, k, _ = weight.shape
    p = dilation * (k - 1) // 2
    ho, wo = (h + 2 * p - dilation * (k - 1) - 1) // stride + 1, (w + 2 * p - dilation * (k - 1) - 1) // stride + 1
    xp = torch.zeros(b, c, h + 2 * p, w + 2 * p, dtype=x.dtype)
    xp[:, :, p:p + h, p:p + w] = x
    xg = xp.view(b, groups, cg, h + 2 * p, w + 2 * p)
    wg = weight.view(groups, o // groups, cg, k, k)
    out = torch.zeros(b, groups, o // groups, ho, wo, dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            patch = xg[:, :, :, i * dilation:i * dilation + (ho - 1) * stride + 1:stride,
                       j * dilation:j * dilation + (wo - 1) * stride + 1:stride]  # [B, G, Cg, Ho, Wo]
            out += torch.einsum("goc,bgchw->bgohw", wg[:, :, :, i, j], patch)
    out = out.reshape(b, o, ho, wo)
    return out if bias is None else out + bias[None, :, None, None]


def avg_pool_ref(x, r, ceil_mode):
    """Mean over r x r windows with stride r; ceil_mode keeps the partial windows at the bottom / right edge and
    averages them over their in-bounds elements, floor mode drops them (nn.AvgPool2d(r, r))."""
    h, w = x.shape[-2:]
    ho, wo = (-(-h // r), -(-w // r)) if ceil_mode else (h // r, w // r)
    out = torch.empty(*x.shape[:2], ho, wo, dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * r:(i + 1) * r, j * r:(j + 1) * r].mean(dim=(2, 3))
    return out


def nearest_ref(x, size):
    """PyTorch's 'nearest' resize: output index i reads input index floor(i * in / out)."""
    (h, w), (ho, wo) = x.shape[-2:], size
    rows = [min(int(i * h / ho), h - 1) for i in range(ho)]
    cols = [min(int(j * w / wo), w - 1) for j in range(wo)]
    return x[:, :, rows][:, :, :, cols]


def _interp_matrix(n_in, n_out):
    """Bilinear weights along one axis, align_corners=False: source = (i + 0.5) * n_in / n_out - 0.5, >= 0."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(src)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[i, i0] += 1 - lam
        m[i, i1] += lam
    return m


def bilinear_ref(x, size):
    """Bilinear resize (align_corners=False) as two interpolation matrices."""
    rh, rw = _interp_matrix(x.shape[-2], size[0]), _interp_matrix(x.shape[-1], size[1])
    return torch.einsum("ih,bchw,jw->bcij", rh, x, rw)


def bn_eval(v: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BN over dim 1 of ``v`` (any trailing dims): running statistics, then the affine map."""
    s = _channel_shape(v)
    return ((v - bn.running_mean.view(s)) / torch.sqrt(bn.running_var.view(s) + bn.eps) * bn.weight.view(s)
            + bn.bias.view(s))


def bn_train(v: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Training-mode BN over dim 1 of ``v``: batch statistics (biased variance over every other dim)."""
    dims = [d for d in range(v.dim()) if d != 1]
    s = _channel_shape(v)
    mean = v.mean(dims, keepdim=True)
    var = ((v - mean) ** 2).mean(dims, keepdim=True)
    return (v - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(s) + bn.bias.view(s)


def batch_norm_ref(v: torch.Tensor, norm: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """BN with batch statistics in training, running statistics in eval."""
    return bn_train(v, norm) if training else bn_eval(v, norm)


def randomize_bn_(module: nn.Module, seed: int = 3) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every BatchNorm, so eval BN is not identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
                mod.weight.copy_(1 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64))
                mod.bias.copy_(0.3 * torch.randn(n, generator=g, dtype=torch.float64))
    return module


def assert_same_forward_and_gradients(fast: nn.Module, slow: nn.Module, x: torch.Tensor) -> None:
    """``fast`` and ``slow`` (same weights) agree on ``x``: output, input gradient, every parameter gradient."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fast(x1), slow(x2)
    torch.testing.assert_close(y1, y2)
    up = torch.randn_like(y1)
    (y1 * up).sum().backward()
    (y2 * up).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for (name, p1), p2 in zip(fast.named_parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)
