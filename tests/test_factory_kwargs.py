"""Every registered module takes torch's factory arguments ``device=`` / ``dtype=``; ``visattn.layer`` for timm."""

import inspect
import subprocess
import sys
from importlib import resources

import pytest
import torch

import visattn
from tests._build import build

KEYS = visattn.list_modules()


@pytest.mark.parametrize("key", KEYS)
def test_builds_on_meta(key):
    m = build(key, device="meta")
    tensors = list(m.parameters()) + list(m.buffers())
    assert all(t.is_meta for t in tensors), [n for n, t in m.state_dict().items() if not t.is_meta]


@pytest.mark.parametrize("key", KEYS)
def test_dtype_equals_building_then_casting(key):
    torch.manual_seed(3)
    direct = build(key, dtype=torch.float64)
    torch.manual_seed(3)
    cast = build(key).double()
    a, b = direct.state_dict(), cast.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    floats = [t for t in a.values() if t.is_floating_point()]
    assert all(t.dtype == torch.float64 for t in floats)


@pytest.mark.parametrize("key", KEYS)
def test_signature_and_create_accept_factory_kwargs(key):
    params = inspect.signature(visattn.info(key).cls).parameters
    assert params["device"].kind is inspect.Parameter.KEYWORD_ONLY and params["device"].default is None
    assert params["dtype"].kind is inspect.Parameter.KEYWORD_ONLY and params["dtype"].default is None
    assert "device" not in visattn.info(key).defaults  # defaults stay the paper's arguments


def test_cbam_on_meta_and_bad_dtype():
    m = visattn.create("cbam", 64, device="meta")
    assert next(m.parameters()).device.type == "meta"
    with pytest.raises(ValueError, match="CBAM: dtype must be a floating-point"):
        visattn.create("cbam", 64, dtype=torch.int64)
    with pytest.raises(TypeError, match="devise"):
        visattn.create("cbam", 64, devise="meta")


def test_package_conventions():
    code = "import visattn; print(visattn.backbones.__name__, visattn.layers.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["visattn.backbones", "visattn.layers"]
    assert resources.files("visattn").joinpath("py.typed").is_file()
    params = inspect.signature(visattn.attach).parameters
    assert {"model", "key", "position", "where", "replace", "input_size"} <= set(params)


# ------------------------------------------------------------------ timm's attn_layer

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("key", ["se", "eca", "cbam", "coord", "gc", "simam"])
def test_as_timm_attn_layer(key):
    attn = visattn.layer(key)
    m = timm.create_model("resnet10t", pretrained=False, num_classes=4, block_args=dict(attn_layer=attn)).eval()
    cls = visattn.info(key).cls
    found = [b.se for b in m.modules() if hasattr(b, "se") and hasattr(b, "conv1")]
    assert len(found) == 4 and all(type(s) is cls for s in found)
    assert found[-1] is m.layer4[0].se
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 4)
    # the same model with attach(): the same modules, at the same place, with the same parameter count
    ref = visattn.attach(timm.create_model("resnet10t", pretrained=False, num_classes=4), key)
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())


def test_layer_arguments():
    m = timm.create_model("resnet10t", pretrained=False, block_args=dict(attn_layer=visattn.layer("cbam", reduction=8)))
    assert m.layer1[0].se.channel_gate.mlp[1].out_features == 64 // 8
    se = visattn.layer("se")(96, rd_ratio=0.25)  # timm's EfficientNet builder passes rd_ratio
    assert se.fc1.out_channels == 24
    assert visattn.layer("se")(7, rd_ratio=0.5).fc1.out_channels == round(3.5) == 4  # timm's rounding
    assert visattn.layer("se", reduction=8)(96, rd_ratio=0.25).fc1.out_channels == 12  # fixed arguments win
    with pytest.raises(TypeError, match="act_layer"):
        visattn.layer("eca")(96, act_layer=torch.nn.SiLU)
    eca = visattn.layer("eca", ignore=("act_layer",))(96, act_layer=torch.nn.SiLU)
    assert type(eca) is visattn.info("eca").cls
    with pytest.raises(KeyError, match="cbma"):
        visattn.layer("cbma")


def test_efficientnet_se_layer():
    se = visattn.layer("se", act_layer="silu")
    m = timm.create_model("efficientnet_b0", pretrained=False, se_layer=se, num_classes=3).eval()
    ref = timm.create_model("efficientnet_b0", pretrained=False, num_classes=3)
    assert type(m.blocks[1][0].se) is visattn.info("se").cls
    assert m.blocks[1][0].se.fc1.out_channels == ref.blocks[1][0].se.conv_reduce.out_channels
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_layers_own_arguments_win_over_the_callers():
    """timm passes act_layer=nn.ReLU (or SiLU) to its attn_layer / se_layer: the layer's bound choice stays."""
    se = visattn.layer("se", act_layer="silu")(64, act_layer=torch.nn.ReLU)
    assert type(se.act) is torch.nn.SiLU
    se = visattn.layer("se", rd_channels=5)(64, rd_channels=9, rd_ratio=0.5)
    assert se.fc1.out_channels == 5
    assert type(visattn.layer("se")(64, act_layer=torch.nn.ReLU6).act) is torch.nn.ReLU6  # unbound: the caller's
