"""Selective Kernel convolution against the paper's equations (float64, explicit taps) and timm's SelectiveKernel."""

import pytest
import torch

import visattn
from tests._build import randomize_
from tests._reference import batch_norm_ref, conv_ref, randomize_bn_
from visattn.modules.sk import SelectiveKernelConv


def reference_sk(x, m: SelectiveKernelConv, training=False):
    """Eqs. 1-6 of Li et al. for M branches: U_m = ReLU(BN(K_m * X)), U = sum, s = GAP(U),
    z = ReLU(BN(W s)), a = softmax over branches of A_m z, V = sum_m a_m U_m."""
    stride = m.paths[0].conv.stride[0]
    groups = m.paths[0].conv.groups
    us = []
    for d, path in enumerate(m.paths, start=1):
        u = conv_ref(x, path.conv.weight, stride=stride, dilation=d, groups=groups)
        us.append(torch.relu(batch_norm_ref(u, path.bn, training)))
    u_sum = sum(us)
    s = u_sum.sum(dim=(2, 3)) / (u_sum.shape[2] * u_sum.shape[3])  # [B, C']
    z = torch.einsum("dc,bc->bd", m.fc_reduce.weight[:, :, 0, 0], s)
    zb = z[:, :, None, None]
    bn_training = training and z.shape[0] > 1
    z = torch.relu(batch_norm_ref(zb, m.bn, bn_training))[:, :, 0, 0]
    logits = torch.einsum("kd,bd->bk", m.fc_select.weight[:, :, 0, 0], z).view(z.shape[0], len(us), -1)  # [B, M, C']
    a = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    return sum(a[:, i, :, None, None] * us[i] for i in range(len(us)))


def _randomized(channels, **kw):
    return randomize_bn_(randomize_(SelectiveKernelConv(channels, **kw), std=0.3)).double()


@pytest.mark.parametrize("kw,size", [
    ({}, (6, 7)),
    ({"stride": 2, "out_channels": 64}, (7, 9)),
    ({"num_branches": 3, "groups": 8, "min_dim": 4}, (5, 5)),
    ({"stride": 3, "groups": 1, "reduction": 4}, (1, 8)),
])
@pytest.mark.parametrize("training", [False, True])
def test_matches_paper_equations(kw, size, training):
    m = _randomized(32, **kw).train(training)
    x = torch.randn(3, 32, *size, dtype=torch.float64)
    y = m(x)
    stride = kw.get("stride", 1)
    assert y.shape == (3, kw.get("out_channels", 32), -(-size[0] // stride), -(-size[1] // stride))
    torch.testing.assert_close(y, reference_sk(x, m, training))


def test_widths_and_parameter_count():
    m = visattn.create("sk", 128)
    assert m.fc_reduce.out_channels == 32  # d = max(128 // 16, 32)
    assert [p.conv.dilation for p in m.paths] == [(1, 1), (2, 2)] and all(p.conv.groups == 32 for p in m.paths)
    assert sum(p.numel() for p in m.parameters()) == 2 * (128 * 4 * 9 + 2 * 128) + 128 * 32 + 2 * 32 + 32 * 256
    assert SelectiveKernelConv(1024, groups=32).fc_reduce.out_channels == 64  # 1024 // 16, above L
    assert SelectiveKernelConv(64, rd_channels=7).fc_reduce.out_channels == 7
    assert SelectiveKernelConv(64, num_branches=3).fc_select.out_channels == 3 * 64


def test_branch_weights_are_a_softmax_over_branches():
    m = _randomized(64, num_branches=3).eval()
    x = torch.randn(2, 64, 5, 6, dtype=torch.float64)
    a = m.attention_map(x)
    assert a.shape == (2, 3, 64, 1, 1) and (a > 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(2, 64, 1, 1, dtype=torch.float64))


def test_single_sample_training_uses_running_statistics_for_z():
    m = _randomized(32).train()
    x = torch.randn(1, 32, 5, 6, dtype=torch.float64)
    running = m.bn.running_mean.clone()
    y = m(x)
    torch.testing.assert_close(m.bn.running_mean, running)  # not updated by a one-sample batch
    torch.testing.assert_close(y, reference_sk(x, m, training=True))  # branches batch-normalised, z with running stats


def test_bad_arguments():
    with pytest.raises(ValueError, match="SelectiveKernelConv.*groups"):
        SelectiveKernelConv(48, groups=32)
    with pytest.raises(ValueError, match="SelectiveKernelConv.*groups"):
        SelectiveKernelConv(64, out_channels=80)
    with pytest.raises(ValueError, match="SelectiveKernelConv.*num_branches"):
        SelectiveKernelConv(64, num_branches=0)


def _timm_sk(channels, out_channels, num_branches, stride, d):
    sk = pytest.importorskip("timm.layers.selective_kernel")
    return sk.SelectiveKernel(channels, out_channels, kernel_size=[3, 5, 7][:num_branches], stride=stride, groups=32,
                              rd_channels=d, keep_3x3=True, split_input=False)


@pytest.mark.parametrize("num_branches,stride,out", [(2, 1, 64), (3, 2, 128)])
def test_equals_timm_selective_kernel(num_branches, stride, out):
    m = _randomized(64, out_channels=out, num_branches=num_branches, stride=stride).float()
    ref = _timm_sk(64, out, num_branches, stride, m.fc_reduce.out_channels)
    # timm keeps W, BN and A in an ``attn`` submodule; everything else has the same name.
    ref.load_state_dict({("attn." + k if k.split(".")[0] in ("fc_reduce", "bn", "fc_select") else k): v
                         for k, v in m.state_dict().items()})
    x = torch.randn(2, 64, 9, 10)
    for mode in ("eval", "train"):
        getattr(m, mode)(), getattr(ref, mode)()
        torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


def test_parameter_count_equals_timm():
    ref = _timm_sk(128, 128, 2, 1, 32)
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in visattn.create("sk", 128).parameters())
