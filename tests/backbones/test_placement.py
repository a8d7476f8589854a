"""Where attention modules go in visattn's ResNets, what they compute there, and the parameter counts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visattn
from visattn.backbones import BasicBlock, Bottleneck, create
from visattn.backbones.blocks import conv1x1
from visattn.backbones.resnet_places import default_nonlocal_blocks
from visattn.modules.se import SqueezeExcite


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def need(*keys):
    missing = [k for k in keys if k not in visattn.list_modules()]
    if missing:
        pytest.fail(f"{missing} not registered")


def slots(model):
    """{block name: (attention class name, position)} for every filled slot."""
    return {name: (type(b.attn).__name__, b.position) for name, b in model.named_modules()
            if isinstance(b, (BasicBlock, Bottleneck)) and b.attn is not None}


# ------------------------------------------------------------------ what a block computes at each position

def bn_ref(x, m):
    shape = (1, -1, 1, 1)
    return ((x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * m.weight.view(shape)
            + m.bias.view(shape))


def conv_ref(x, m):
    return F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation, m.groups)


def se_ref(x, se):
    """SE paper eqs. 2-4 in einsum."""
    w1, b1, w2, b2 = se.fc1.weight[:, :, 0, 0], se.fc1.bias, se.fc2.weight[:, :, 0, 0], se.fc2.bias
    h = torch.relu(torch.einsum("rc,bc->br", w1, x.mean((2, 3))) + b1)
    s = torch.sigmoid(torch.einsum("cr,br->bc", w2, h) + b2)
    return torch.einsum("bchw,bc->bchw", x, s)


def residual_ref(block, x):
    if isinstance(block, Bottleneck):
        out = torch.relu(bn_ref(conv_ref(x, block.conv1), block.bn1))
        out = torch.relu(bn_ref(conv_ref(out, block.conv2), block.bn2))
        return bn_ref(conv_ref(out, block.conv3), block.bn3)
    out = torch.relu(bn_ref(conv_ref(x, block.conv1), block.bn1))
    return bn_ref(conv_ref(out, block.conv2), block.bn2)


def block_ref(block, x, position, se):
    """SE paper Fig. 5: standard, SE-PRE, SE-POST (after the ReLU), SE-Identity; ``se=None``: no attention."""
    attend = (lambda t: se_ref(t, se)) if se is not None else (lambda t: t)
    shortcut = lambda t: bn_ref(conv_ref(t, block.downsample[0]), block.downsample[1])  # noqa: E731
    if position == "pre":
        x = attend(x)
    res, idn = residual_ref(block, x), shortcut(x)
    if position == "standard":
        res = attend(res)
    if position == "identity":
        idn = attend(idn)
    out = torch.relu(res + idn)
    return attend(out) if position == "post" else out


def randomize_bn_(module):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return module


@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity"])
@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_block_positions_match_reference(kind, position):
    if kind == "basic":
        block, c_in, c_out = BasicBlock(16, 32, 2, nn.Sequential(conv1x1(16, 32, 2), nn.BatchNorm2d(32))), 16, 32
    else:
        block, c_in, c_out = Bottleneck(32, 8, 2, nn.Sequential(conv1x1(32, 32, 2), nn.BatchNorm2d(32))), 32, 32
    block.set_attention(SqueezeExcite(c_in if position == "pre" else c_out, reduction=4), position)
    block = randomize_bn_(block).double().eval()
    x = torch.randn(2, c_in, 9, 7, dtype=torch.float64)
    expected = block_ref(block, x, position, block.attn)
    torch.testing.assert_close(block(x), expected)
    assert not torch.allclose(expected, block_ref(block, x, position, None))  # the attention does something


def test_slot_is_taken_once():
    block = BasicBlock(8, 8)
    block.set_attention(SqueezeExcite(8, reduction=2))
    with pytest.raises(ValueError, match="already"):
        block.set_attention(SqueezeExcite(8, reduction=2))
    with pytest.raises(ValueError, match="position"):
        BasicBlock(8, 8).set_attention(SqueezeExcite(8), "middle")


# ------------------------------------------------------------------ placement by role

def test_plugin_goes_in_every_block_at_position():
    m = create("resnet20", "se", {"reduction": 4}, position="identity")
    got = slots(m)
    assert set(got) == {f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)}
    assert set(got.values()) == {("SqueezeExcite", "identity")}
    assert m.layer2[0].attn.channels == 32
    pre = create("resnet20", "se", {"reduction": 4}, position="pre")
    assert [pre.layer2[0].attn.channels, pre.layer2[1].attn.channels] == [16, 32]  # on the block input


def test_stages_and_blocks_select():
    m = create("resnet20", "se", {"reduction": 4}, stages=[1, 3])
    assert set(slots(m)) == {f"layer{s}.{i}" for s in (1, 3) for i in range(3)}
    m = create("resnet20", "se", {"reduction": 4}, blocks={2: [0, 2], 3: [1]})
    assert set(slots(m)) == {"layer2.0", "layer2.2", "layer3.1"}
    with pytest.raises(ValueError, match="not both"):
        create("resnet20", "se", stages=[1], blocks={1: [0]})


@pytest.mark.parametrize("key", ["bam", "residual_attention"])
def test_stage_boundary_modules(key):
    need(key)
    m = create("resnet20", key)
    assert {k: v[1] for k, v in slots(m).items()} == {"layer1.2": "post", "layer2.2": "post"}
    big = create("resnet18", key)
    assert set(slots(big)) == {"layer1.1", "layer2.1", "layer3.1"}  # BAM paper: after layer1..3
    with pytest.raises(ValueError, match="position"):
        create("resnet20", key, position="pre")


def test_nonlocal_default_blocks():
    # the non-local paper's 5-block ResNet-50: "3 to res4 and 2 to res3, to every other residual block"
    assert default_nonlocal_blocks([3, 4, 6, 3]) == {2: [1, 3], 3: [1, 3, 5]}
    assert default_nonlocal_blocks([3, 4, 23, 3]) == {2: [1, 3], 3: [1, 3, 5]}
    assert default_nonlocal_blocks([2, 2, 2, 2]) == {2: [1], 3: [1]}
    assert default_nonlocal_blocks([3, 3, 3]) == {2: [1], 3: [1]}


def test_nonlocal_placement():
    need("nonlocal")
    m = create("resnet50", "nonlocal")
    assert {k: v[1] for k, v in slots(m).items()} == {
        "layer2.1": "post", "layer2.3": "post", "layer3.1": "post", "layer3.3": "post", "layer3.5": "post"}
    assert m.layer3[1].attn.channels == 1024
    m = create("resnet20", "nonlocal", blocks={3: [0, 1, 2]})
    assert set(slots(m)) == {"layer3.0", "layer3.1", "layer3.2"}


# inputs for ResNet-18 whose layer4 maps (input / 32) are as large as these modules need (their ``min_size``)
R18_SIZE = {"asp_oc": 96, "scconv": 160, "sanet": 160}


@pytest.mark.parametrize("key", ["danet", "pam", "cam", "cc", "psa", "ema", "oc", "asp_oc", "mhsa", "transformer"])
def test_context_after_last_stage(key):
    need(key)
    size = R18_SIZE.get(key, 64)
    m = create("resnet18", key, input_size=size)
    assert {k: v[1] for k, v in slots(m).items()} == {"layer4.1": "post"}
    assert m(torch.randn(2, 3, size, size)).shape == (2, 1000)
    m = create("resnet20", key, stages=[2, 3])
    assert set(slots(m)) == {"layer2.2", "layer3.2"}


@pytest.mark.parametrize("key", ["rga_s", "rga_c"])
def test_rga_after_every_stage(key):
    need(key)
    m = create("resnet20", key, in_chans=1, input_size=28)
    assert set(slots(m)) == {"layer1.2", "layer2.2", "layer3.2"}
    assert m.layer3[2].attn.feature_size == (7, 7)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_size_bound_module_gets_its_feature_size():
    need("psa")
    m = create("resnet18", "psa", input_size=(64, 96))
    assert m.layer4[1].attn.feature_size == (2, 3)
    assert m(torch.randn(1, 3, 64, 96)).shape == (1, 1000)
    with pytest.raises(ValueError, match="feature_size"):
        m(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="set by the backbone"):
        create("resnet20", "psa", {"feature_size": (8, 8)})


@pytest.mark.parametrize("key,kwargs", [("sk", {"groups": 8}), ("scconv", {}), ("sanet", {})])
def test_conv_role_replaces_the_strided_3x3(key, kwargs):
    need(key)
    m = create("resnet20", key, kwargs)
    for block in [m.layer1[0], m.layer2[0], m.layer3[2]]:
        assert isinstance(block.conv1, visattn.info(key).cls)
        assert isinstance(block.bn1, nn.Identity)  # the module normalises its own output
        assert isinstance(block.conv2, nn.Conv2d) and not block.relu.inplace
    assert slots(m) == {}
    x = torch.randn(2, 3, 32, 32)
    assert m.layer2[0].conv1(torch.randn(2, 16, 32, 32)).shape == (2, 32, 16, 16)
    assert m(x).shape == (2, 10)


def test_conv_role_in_bottleneck():
    need("sk")
    m = create("resnext50_32x4d", "sk")
    b = m.layer3[0]
    assert isinstance(b.conv2, visattn.info("sk").cls) and isinstance(b.bn2, nn.Identity)
    assert (b.conv2.channels, b.conv2.out_channels) == (512, 512)
    assert all(p[0].stride == (2, 2) for p in b.conv2.paths)
    assert isinstance(b.conv1, nn.Conv2d) and isinstance(b.conv3, nn.Conv2d)
    with pytest.raises(ValueError, match="position"):
        create("resnet20", "sk", {"groups": 8}, position="pre")


def test_too_small_feature_maps_fail_at_construction():
    need("scconv")
    with pytest.raises(ValueError, match=r"needs H >= \d+ .* feature map at layer3\.1\.conv1 is \(4, 4\)"):
        create("resnet18", "scconv", input_size=64)


def test_transform_on_the_input():
    need("stn")
    m = create("resnet20", "stn", in_chans=1)
    assert m.transform is not None and slots(m) == {}
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="input"):
        create("resnet20", "stn", stages=[1])


def test_gate_is_refused():
    need("attention_gate")
    with pytest.raises(ValueError, match="gating signal"):
        create("resnet20", "attention_gate")


# ------------------------------------------------------------------ forward for every registered key

EXPECTED_KEYS = ["se", "eca", "sge", "gc", "cbam", "bam", "scse", "triplet", "coord", "simam", "polarized", "strip",
                 "mixed_pool", "lka", "van", "residual_attention", "sk", "scconv", "sanet", "stn", "nonlocal", "mhsa",
                 "transformer", "pam", "cam", "danet", "oc", "asp_oc", "cc", "psa", "ema", "rga_s", "rga_c"]
# CIFAR widths (16, 32, 64) are below some paper defaults that assume >= 64 channels.
CIFAR_KWARGS = {"sge": {"groups": 8}, "sk": {"groups": 8}}


def all_keys():
    return sorted(set(EXPECTED_KEYS) | set(visattn.list_modules()))


@pytest.mark.parametrize("key", [k for k in all_keys() if visattn.info(k).role != "gate"])  # gates: refused
def test_every_key_in_a_fashion_mnist_resnet20(key):
    need(key)
    m = create("resnet20", key, CIFAR_KWARGS.get(key), in_chans=1, input_size=28)
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    m.eval()
    assert torch.isfinite(m(x)).all()


@pytest.mark.parametrize("key", ["se", "cbam", "bam", "sk", "stn", "cc", "nonlocal", "psa"])
def test_resnet18_forward_at_64(key):
    need(key)
    m = create("resnet18", key, input_size=64, num_classes=10)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("key", all_keys())
def test_every_key_in_resnet18_and_cifar32(key):
    need(key)
    if visattn.info(key).role == "gate":
        pytest.skip("gates are refused")
    size = R18_SIZE.get(key, 64)
    kwargs = {"ceil_mode": True} if key == "scconv" else None
    m = create("resnet18", key, kwargs, input_size=size)
    assert m(torch.randn(2, 3, size, size)).shape == (2, 1000)
    m = create("resnet32", key, CIFAR_KWARGS.get(key))
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------ parameter counts

def se_params(c, r=16):
    """SE(C, r) with biases: two FCs C -> floor(C / r) -> C."""
    d = c // r
    return 2 * c * d + d + c


# (input, output) channels of ResNet-50's 16 bottlenecks: stage outputs 256 .. 2048, 3 / 4 / 6 / 3 blocks
RESNET50_BLOCKS = ([(64, 256)] + [(256, 256)] * 2 + [(256, 512)] + [(512, 512)] * 3
                   + [(512, 1024)] + [(1024, 1024)] * 5 + [(1024, 2048)] + [(2048, 2048)] * 2)


def count(name, key=None, **kwargs):
    """Parameters of a backbone built on the meta device (no memory, no initialisation: fast)."""
    with torch.device("meta"):
        return n_params(create(name, key, **kwargs))


def within(value, published, tol=0.005):
    return abs(value - published) / published < tol


def test_resnet50_block_channels():
    with torch.device("meta"):
        m = create("resnet50")
    got = [(b.conv1.in_channels, b.bn3.num_features) for b in m.modules() if isinstance(b, Bottleneck)]
    assert got == RESNET50_BLOCKS


def test_se_resnet50():
    n = count("resnet50", "se")
    assert n == 28_088_024 == 25_557_032 + sum(se_params(c) for _, c in RESNET50_BLOCKS)
    assert within(n, 28.09e6)  # SE paper: 28.1M
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        assert n == n_params(timm.create_model("seresnet50", pretrained=False))


@pytest.mark.parametrize("position", ["pre", "post", "identity"])
def test_se_resnet50_positions(position):
    channels = [c_in for c_in, _ in RESNET50_BLOCKS] if position == "pre" else [c for _, c in RESNET50_BLOCKS]
    assert count("resnet50", "se", position=position) == 25_557_032 + sum(se_params(c) for c in channels)


def test_cbam_resnet50():
    need("cbam")
    n = count("resnet50", "cbam")
    assert n == 28_089_624
    assert within(n, 28.09e6)  # CBAM paper, Table 4: ResNet50 + CBAM, 28.09M


def test_bam_resnet50():
    need("bam")
    n = count("resnet50", "bam")
    assert n == 25_915_099
    assert within(n, 25.92e6)  # BAM paper, Table 3: ResNet50 + BAM, 25.92M


def test_sknet50():
    """SKNet-50 is SK[M=2, G=32, r=16] in ResNeXt-50 (32x4d): 27.5M in the SK paper (Table 2)."""
    need("sk")
    n = count("resnext50_32x4d", "sk")
    assert n == 27_479_784
    assert within(n, 27.5e6)
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        assert n == n_params(timm.create_model("skresnext50_32x4d", pretrained=False))
    # SK with the paper's G = 32 in a plain ResNet-50 (narrow 3x3 convs become grouped): far fewer parameters
    assert count("resnet50", "sk") == 15_318_184


def test_scnet50():
    need("scconv")
    n = count("resnet50", "scconv")
    assert n == 25_564_584
    assert within(n, 25.56e6)  # SCNet paper, Table 1: SCNet-50, 25.56M
