"""visattn's ResNets: torchvision's layout and weights, He et al.'s CIFAR ResNets, the factory."""

import pytest
import torch
import torch.nn.functional as F

import visattn
from visattn.backbones import BasicBlock, Bottleneck, CifarResNet, ZeroPadShortcut, create, list_backbones
from visattn.backbones.resnet_places import find_stages, trace_sizes


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------------ ImageNet layout

@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_strict(name):
    tvm = pytest.importorskip("torchvision.models")
    ref = getattr(tvm, name)(weights=None)
    m = create(name)
    ref_sd, sd = ref.state_dict(), m.state_dict()
    assert list(sd) == list(ref_sd)
    assert all(sd[k].shape == ref_sd[k].shape for k in sd)
    m.load_state_dict(ref_sd, strict=True)
    assert n_params(m) == n_params(ref)


def test_resnet50_parameter_count():
    tvm = pytest.importorskip("torchvision.models")
    with torch.device("meta"):  # construction only: no memory, no init
        assert n_params(create("resnet50")) == 25_557_032
        for name in ["resnet34", "resnet101", "resnet152", "resnext50_32x4d"]:
            assert n_params(create(name)) == n_params(getattr(tvm, name)(weights=None)), name


def test_resnet18_equals_torchvision_after_loading_weights():
    tvm = pytest.importorskip("torchvision.models")
    ref = tvm.resnet18(weights=None, num_classes=7)
    with torch.no_grad():  # non-trivial BN statistics
        for mod in ref.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    m = create("resnet18", num_classes=7)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(m.eval()(x), ref.eval()(x))
    m.train(), ref.train()
    torch.testing.assert_close(m(x), ref(x))


def test_in_chans_num_classes_and_features():
    m = create("resnet18", in_chans=1, num_classes=3)
    x = torch.randn(2, 1, 64, 48)
    assert m(x).shape == (2, 3)
    assert m.forward_features(x).shape == (2, 512, 2, 2)
    assert create("resnet18", num_classes=0)(torch.randn(1, 3, 64, 64)).shape == (1, 512)


def test_zero_init_residual():
    m = create("resnet18", zero_init_residual=True)
    assert all((b.bn2.weight == 0).all() for b in m.modules() if isinstance(b, BasicBlock))
    assert all((b.bn1.weight == 1).all() for b in m.modules() if isinstance(b, BasicBlock))


# ------------------------------------------------------------------------------------------ CIFAR ResNets

# He et al., Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters (option A shortcuts, 10 classes).
CIFAR_COUNTS = {20: (269_722, 0.27e6), 32: (464_154, 0.46e6), 44: (658_586, 0.66e6), 56: (853_018, 0.85e6),
                110: (1_727_962, 1.7e6)}


def cifar_count(depth, widths=(16, 32, 64), num_classes=10, in_chans=3):
    """Independent count: 3x3 convs without bias, BN (2 per channel), option-A shortcuts, fc."""
    n = (depth - 2) // 6
    total = 9 * in_chans * widths[0] + 2 * widths[0]
    c_in = widths[0]
    for w in widths:
        for _ in range(n):
            total += 9 * c_in * w + 9 * w * w + 4 * w
            c_in = w
    return total + widths[-1] * num_classes + num_classes


@pytest.mark.parametrize("depth", sorted(CIFAR_COUNTS))
def test_cifar_parameter_counts(depth):
    exact, paper = CIFAR_COUNTS[depth]
    m = create(f"resnet{depth}")
    assert n_params(m) == exact == cifar_count(depth)
    assert abs(exact - paper) / paper < 0.02  # the paper rounds to 2 digits
    assert len(m.layer1) == len(m.layer2) == len(m.layer3) == (depth - 2) // 6
    assert [m.layer1[0].conv1.out_channels, m.layer2[0].conv1.out_channels, m.layer3[0].conv1.out_channels] == [
        16, 32, 64]


def test_cifar_forward_sizes():
    m = create("resnet20")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    fm = create("resnet20", in_chans=1, num_classes=10)
    assert fm.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 64, 7, 7)


def test_option_a_shortcut_matches_loops():
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    out = ZeroPadShortcut(16, 32, 2)(x)
    ref = torch.zeros(2, 32, 4, 5, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            ref[:, :16, i, j] = x[:, :, 2 * i, 2 * j]
    torch.testing.assert_close(out, ref)
    # the sub-sampled grid is the grid of the 3x3 / stride-2 conv on the residual branch
    assert F.conv2d(x, torch.zeros(32, 16, 3, 3, dtype=x.dtype), stride=2, padding=1).shape == out.shape


def test_option_b_projection():
    a, b = create("resnet20"), create("resnet20", shortcut="B")
    assert isinstance(a.layer2[0].downsample, ZeroPadShortcut) and a.layer2[1].downsample is None
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert b(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_cifar_bad_arguments():
    with pytest.raises(ValueError, match="6n"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="shortcut"):
        CifarResNet(20, shortcut="C")


# ------------------------------------------------------------------------------------------ factory

def test_list_backbones():
    names = list_backbones()
    for name in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet20", "resnet32", "resnet56", "resnet110"]:
        assert name in names
    assert list_backbones("resnet1*") == ["resnet101", "resnet110", "resnet152", "resnet18"]


def test_unknown_backbone_suggests():
    with pytest.raises(KeyError, match="resnet50"):
        create("resnet5O")
    with pytest.raises(KeyError, match="list_backbones"):
        create("vgg16")


def test_bad_attention_arguments():
    with pytest.raises(KeyError, match="'se'"):
        create("resnet20", "sex")
    with pytest.raises(ValueError, match="position"):
        create("resnet20", "se", position="middle")
    with pytest.raises(ValueError, match="stages"):
        create("resnet20", "se", stages=[4])
    with pytest.raises(ValueError, match="blocks"):
        create("resnet20", "se", blocks={1: [3]})
    with pytest.raises(ValueError, match="attention key"):
        create("resnet20", attention_kwargs={"reduction": 4})
    with pytest.raises(TypeError, match="reduction"):
        create("resnet20", "se", {"reductoin": 4})


# ------------------------------------------------------------------------------------------ sizes and init

@pytest.mark.parametrize("name,size", [("resnet18", (67, 45)), ("resnet20", (28, 31))])
def test_computed_block_sizes_match_a_real_forward(name, size):
    m = create(name)
    sites = find_stages(m)
    assert m._block_sizes(sites, size) == trace_sizes(m, sites, size)


@pytest.mark.parametrize("key", ["gc", "cc", "nonlocal", "danet", "ema"])
def test_attention_initialisation_is_kept(key):
    """The backbone's Kaiming / BN init must not overwrite zero-initialised parts of attention modules."""
    if key not in visattn.list_modules():
        pytest.skip(f"{key!r} not registered yet")
    m = create("resnet20", key)
    slots = [b.attn for b in m.modules() if isinstance(b, (BasicBlock, Bottleneck)) and b.attn is not None]
    assert slots
    for attn in slots:
        fresh = visattn.create(key, attn.channels) if hasattr(attn, "channels") else None
        if fresh is None:
            continue
        zero = {n for n, p in fresh.named_parameters() if p.numel() and (p == 0).all()}
        assert zero, f"{key}: expected a zero-initialised parameter"
        got = dict(attn.named_parameters())
        for name in zero:
            assert (got[name] == 0).all(), f"{key}.{name} was re-initialised by the backbone"
