"""attach() on torchvision and timm ResNets (built without weights: no network)."""

import copy
import pickle

import pytest
import torch
from torch import nn

import visattn
from visattn.backbones import BasicBlock, attach, create

tvm = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")

POSITIONS = ["standard", "pre", "post", "identity"]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def need(*keys):
    missing = [k for k in keys if k not in visattn.list_modules()]
    if missing:
        pytest.skip(f"{missing} not registered yet")


def copy_in_order_(dst, src):
    """Load ``src``'s tensors into ``dst`` pairing the two state_dicts in order (shapes must agree)."""
    d, s = dst.state_dict(), src.state_dict()
    assert len(d) == len(s)
    for (kd, vd), (ks, vs) in zip(d.items(), s.items(), strict=True):
        assert vd.shape == vs.shape, (kd, ks)
    dst.load_state_dict(dict(zip(d, s.values(), strict=True)))


def randomize_(model):
    """Non-trivial BN statistics and attention weights, so that equal outputs mean equal computations."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and ("running" in name or ".attn." in name):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + (0.75 if "running_var" in name else 0.0))
    return model


# ------------------------------------------------------------------ resnet50: counts and a forward

def test_torchvision_resnet50_se():
    m = tvm.resnet50(weights=None)
    assert attach(m, "se") is m
    assert n_params(m) == 28_088_024
    with torch.device("meta"):
        own = create("resnet50", "se")
    assert list(m.state_dict()) == list(own.state_dict())  # the very keys of visattn's SE-ResNet-50
    assert m.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_timm_resnet50_se():
    m = timm.create_model("resnet50", pretrained=False)
    attach(m, "se")
    assert n_params(m) == 28_088_024
    assert type(m.layer1[0].se).__name__ == "SqueezeExcite"  # timm's own slot
    assert m.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


# ------------------------------------------------------------------ same computation as visattn's model

@pytest.mark.parametrize("position", POSITIONS)
def test_torchvision_attach_equals_visattn_model(position):
    m = attach(tvm.resnet18(weights=None), "se", position, reduction=8)
    own = create("resnet18", "se", {"reduction": 8}, position=position)
    randomize_(own)
    m.load_state_dict(own.state_dict(), strict=True)
    assert type(m.layer2[0]) is BasicBlock and m.layer2[0].position == position
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(m.eval()(x), own.eval()(x))


@pytest.mark.parametrize("position", POSITIONS)
def test_timm_attach_equals_visattn_model(position):
    m = attach(timm.create_model("resnet18", pretrained=False), "se", position, reduction=8)
    own = randomize_(create("resnet18", "se", {"reduction": 8}, position=position))
    assert n_params(m) == n_params(own)
    copy_in_order_(m, own)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(m.eval()(x), own.eval()(x))


def test_attach_to_visattn_model_and_top_level_function():
    m = visattn.attach(create("resnet20"), "se", "post", reduction=4)
    assert m.layer3[2].attn.fc1.out_channels == 16 and m.layer3[2].position == "post"
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# ------------------------------------------------------------------ other roles

def test_attach_conv_role():
    need("sk")
    m = attach(tvm.resnet18(weights=None), "sk")
    assert isinstance(m.layer3[0].conv1, visattn.info("sk").cls) and isinstance(m.layer3[0].bn1, nn.Identity)
    assert n_params(m) == n_params(create("resnet18", "sk"))
    t = attach(timm.create_model("resnet18", pretrained=False), "sk")
    assert n_params(t) == n_params(m)
    x = torch.randn(2, 3, 64, 64)
    assert m(x).shape == t(x).shape == (2, 1000)


def test_attach_context_and_size_bound():
    need("cc", "psa")
    m = attach(tvm.resnet18(weights=None), "cc")
    assert m.layer4[1].position == "post" and m.layer4[0].__class__.__module__.startswith("torchvision")
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="input_size"):
        attach(tvm.resnet18(weights=None), "psa")
    m = attach(timm.create_model("resnet18", pretrained=False), "psa", input_size=(64, 96))
    assert m.layer4[1].attn.feature_size == (2, 3)
    assert m(torch.randn(1, 3, 64, 96)).shape == (1, 1000)


def test_attach_stage_boundary():
    need("bam")
    m = attach(tvm.resnet18(weights=None), "bam")
    got = {n for n, b in m.named_modules() if isinstance(b, BasicBlock) and b.attn is not None}
    assert got == {"layer1.1", "layer2.1", "layer3.1"}


def test_attach_transform_starts_as_identity():
    need("stn")
    m = tvm.resnet18(weights=None, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    before = m(x)
    attach(m, "stn")
    assert m.transform is not None
    torch.testing.assert_close(m(x), before, atol=1e-4, rtol=1e-4)  # STN starts at the identity transform


# ------------------------------------------------------------------ copies, pickling, refusals

def test_timm_hooks_survive_deepcopy_and_pickle():
    m = attach(timm.create_model("resnet18", pretrained=False), "se", "pre", reduction=8).eval()
    x = torch.randn(1, 3, 64, 64)
    y = m(x)
    c = copy.deepcopy(m)
    torch.testing.assert_close(c(x), y)
    with torch.no_grad():
        for blk in c.modules():
            if getattr(blk, "attn", None) is not None:
                blk.attn.fc2.bias.fill_(-20.0)  # the copy's gates shut: only the copy changes
    assert not torch.allclose(c(x), y)
    torch.testing.assert_close(m(x), y)
    torch.testing.assert_close(pickle.loads(pickle.dumps(m))(x), y)


class Bottleneck(nn.Module):  # a look-alike from another library: refused, named
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)


def test_refuses_unknown_architectures_with_guidance():
    with pytest.raises(ValueError, match=r"attach\(Sequential, 'se'\): .*no block .*children 0: Conv2d.*where="):
        attach(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), "se")
    with pytest.raises(ValueError, match="unsupported look-alike blocks.*Bottleneck"):
        attach(nn.Sequential(Bottleneck()), "se")


def test_refuses_filled_slots_and_gates():
    m = attach(tvm.resnet18(weights=None), "se")
    with pytest.raises(ValueError, match="already holds SqueezeExcite; pass replace=True"):
        attach(m, "se")
    attach(m, "eca", replace=True)
    assert type(m.layer1[0].attn) is visattn.info("eca").cls
    with pytest.raises(ValueError, match="already has an attention module; pass replace=True"):
        attach(timm.create_model("seresnet18", pretrained=False), "se")
    t = attach(timm.create_model("seresnet18", pretrained=False), "cbam", replace=True)
    assert type(t.layer4[1].se) is visattn.info("cbam").cls
    if "attention_gate" in visattn.list_modules():
        with pytest.raises(ValueError, match="gating signal"):
            attach(tvm.resnet18(weights=None), "attention_gate")
    with pytest.raises(KeyError):
        attach(tvm.resnet18(weights=None), "squeeze")
