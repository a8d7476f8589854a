"""attach() on the CNN families beyond ResNets, on real timm / torchvision models with random weights.

Each family is checked three ways: the module lands in every block the family has (counted independently of
attach), the block computes what a hand-written forward with the module at the family's place computes, and
the original weights keep their state_dict keys (pretrained checkpoints still load).
"""

import copy
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import visattn
from visattn.backbones import attach
from visattn.backbones.families import FAMILIES

tvm = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")
import torchvision  # noqa: E402
from torchvision.models import vgg as tv_vgg  # noqa: E402

SE = visattn.info("se").cls
CBAM = visattn.info("cbam").cls


def vgg11_convs():
    """torchvision's VGG-11 conv stack (``vgg11().features`` without building the 120M-parameter classifier)."""
    return tv_vgg.make_layers(tv_vgg.cfgs["A"])


#: name -> (builder, attach options, independent count of the places). The README's family table uses these.
MODELS = {
    "timm efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", pretrained=False, num_classes=10),
                             dict(replace=True), lambda m: sum(len(s) for s in m.blocks)),
    "timm mobilenetv2_100": (lambda: timm.create_model("mobilenetv2_100", pretrained=False, num_classes=10),
                             {}, lambda m: sum(len(s) for s in m.blocks)),
    "timm regnetx_002": (lambda: timm.create_model("regnetx_002", pretrained=False, num_classes=10),
                         {}, lambda m: sum(type(b).__name__ == "Bottleneck" for b in m.modules())),
    "timm regnety_002": (lambda: timm.create_model("regnety_002", pretrained=False, num_classes=10),
                         dict(replace=True), lambda m: sum(type(b).__name__ == "Bottleneck" for b in m.modules())),
    "torchvision regnet_y_400mf": (lambda: tvm.regnet_y_400mf(weights=None, num_classes=10), dict(replace=True),
                                   lambda m: sum(len(s) for s in m.trunk_output)),
    "torchvision mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(weights=None, num_classes=10),
                                       dict(replace=True),
                                       lambda m: sum(type(x).__name__ == "SqueezeExcitation" for x in m.modules())),
    "torchvision mobilenet_v2": (lambda: tvm.mobilenet_v2(weights=None, num_classes=10), {},
                                 lambda m: sum(type(x).__name__ == "InvertedResidual" for x in m.modules())),
    "timm convnext_atto": (lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=10), {},
                           lambda m: sum(len(s.blocks) for s in m.stages)),
    "torchvision convnext_tiny": (lambda: tvm.convnext_tiny(weights=None, num_classes=10), {},
                                  lambda m: sum(type(x).__name__ == "CNBlock" for x in m.modules())),
    "timm resnext26ts": (lambda: timm.create_model("resnext26ts", pretrained=False, num_classes=10), {},
                         lambda m: sum(len(s) for s in m.stages)),
    "torchvision densenet121": (lambda: tvm.densenet121(weights=None, num_classes=10), {},
                                lambda m: sum(n.startswith("transition") for n, _ in m.features.named_children())),
    "torchvision vgg11 conv stack": (vgg11_convs, {}, lambda m: sum(isinstance(x, nn.MaxPool2d) for x in m)),
}

_built: dict[str, nn.Module] = {}


def fresh(name):
    """A copy of the model ``name``, built once per test session (building DenseNet-121 takes a while)."""
    if name not in _built:
        torch.manual_seed(0)
        _built[name] = MODELS[name][0]().eval()
    return copy.deepcopy(_built[name])


def count(model, cls):
    return sum(type(m) is cls for m in model.modules())


def tree(model):
    """Everything attach could change: module tree, state_dict keys, hooks."""
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return repr(model), list(model.state_dict()), hooks


# ------------------------------------------------------------------ every family: where, how many, keys kept

@pytest.mark.parametrize("name", list(MODELS))
def test_family_gets_a_module_in_every_block(name):
    _, options, places = MODELS[name]
    model = fresh(name)
    expected = places(model)
    before = set(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert attach(model, "cbam", **options) is model
    assert count(model, CBAM) == expected > 0
    after = set(model.state_dict())
    if not options.get("replace"):
        assert before <= after  # the original weights keep their keys
    y = model(x)
    assert y.shape[0] == 1 and torch.isfinite(y).all()


def test_existing_se_needs_replace_and_swaps_only_those():
    m = fresh("torchvision mobilenet_v3_small")
    with pytest.raises(ValueError, match=r"attach\(MobileNetV3, 'se'\): 9 place\(s\) already hold .*replace=True"):
        attach(m, "se")
    with_se = [n for n, b in m.named_modules() if type(b).__name__ == "SqueezeExcitation"]
    attach(m, "se", replace=True)
    assert [n for n, b in m.named_modules() if type(b) is SE] == with_se  # same places, nowhere else


# ------------------------------------------------------------------ the place inside one block (hand-written)

def check_block(block, x, reference):
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x))


def test_timm_inverted_residual_place():
    m = fresh("timm mobilenetv2_100")
    attach(m, "se")
    b = m.blocks[2][1]  # stride 1, with skip
    assert type(b.se) is SE and b.se.fc1.in_channels == b.conv_dw.out_channels

    def ref(x):  # MobileNetV2 / MnasNet: expand, depthwise, SE, project, skip
        y = b.bn2(b.conv_dw(b.bn1(b.conv_pw(x))))
        return b.bn3(b.conv_pwl(b.se(y))) + x

    check_block(b, torch.randn(2, b.conv_pw.in_channels, 9, 7), ref)


def test_timm_efficientnet_swaps_its_se():
    m = fresh("timm efficientnet_b0")
    old = fresh("timm efficientnet_b0").blocks[1][0].se
    attach(m, "se", replace=True, reduction=24)
    b = m.blocks[1][0]
    assert type(b.se) is SE and b.se.fc1.in_channels == old.conv_reduce.in_channels
    assert b.se.fc1.out_channels == old.conv_reduce.out_channels  # 96 / 24 = 4 = round(16 * 0.25)


def test_torchvision_mobilenet_v2_place():
    m = fresh("torchvision mobilenet_v2")
    attach(m, "se")
    b = m.features[3]  # 24 -> 24, stride 1, residual
    dw = b.conv[1]
    assert type(dw.attn) is SE and list(dw._modules)[-1] == "attn"

    def ref(x):
        y = b.conv[0](x)
        y = dw[2](dw[1](dw[0](y)))
        return x + b.conv[3](b.conv[2](dw.attn(y)))

    check_block(b, torch.randn(2, 24, 8, 8), ref)


def test_timm_convnext_place():
    m = fresh("timm convnext_atto")
    attach(m, "se")
    b = m.stages[1].blocks[1]
    with torch.no_grad():
        b.gamma.uniform_(0.5, 1.5)  # layer scale starts at 1e-6: make it matter

    def ref(x):  # after the MLP and its layer scale, before drop-path and the residual add
        y = b.conv_dw(x)
        y = b.mlp(b.norm(y)) if b.use_conv_mlp else b.mlp(b.norm(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return b.drop_path.attn(y * b.gamma.view(1, -1, 1, 1)) + x

    check_block(b, torch.randn(2, b.conv_dw.in_channels, 6, 5), ref)


def test_torchvision_convnext_place():
    m = fresh("torchvision convnext_tiny")
    attach(m, "se")
    b = m.features[1][1]
    with torch.no_grad():
        b.layer_scale.uniform_(0.5, 1.5)
    check_block(b, torch.randn(2, 96, 5, 5), lambda x: b.stochastic_depth.attn(b.layer_scale * b.block(x)) + x)


def test_byobnet_place():
    m = fresh("timm resnext26ts")
    attach(m, "se")
    b = m.stages[1][1]
    assert isinstance(b.attn, nn.Identity) and type(b.attn_last) is SE

    def ref(x):  # the SE paper's place: after the last conv + norm, before the sum
        y = b.conv3_1x1(b.conv2b_kxk(b.conv2_kxk(b.conv1_1x1(x))))
        return b.act(b.attn_last(y) + (x if b.shortcut is None else b.shortcut(x)))

    check_block(b, torch.randn(2, b.conv1_1x1.conv.in_channels, 6, 6), ref)


def test_timm_regnetx_place():
    m = fresh("timm regnetx_002")
    attach(m, "se")
    b = m.s3.b2
    assert type(b.se) is SE and b.se.fc1.in_channels == b.conv2.conv.out_channels
    check_block(b, torch.randn(2, b.conv1.conv.in_channels, 6, 6),
                lambda x: b.act3(b.conv3(b.se(b.conv2(b.conv1(x)))) + x))


def test_torchvision_regnety_place():
    m = fresh("torchvision regnet_y_400mf")
    attach(m, "cbam", replace=True)
    b = m.trunk_output.block2[1]
    assert type(b.f.se) is CBAM and list(b.f._modules) == ["a", "b", "se", "c"]
    check_block(b, torch.randn(2, 104, 6, 6), lambda x: b.activation(x + b.f.c(b.f.se(b.f.b(b.f.a(x))))))


def test_densenet_place():
    m = fresh("torchvision densenet121")
    attach(m, "se")
    t = m.features.transition2
    assert type(t.attn) is SE and t.attn.fc1.in_channels == t.conv.out_channels == 256
    check_block(t, torch.randn(2, 512, 8, 8), lambda x: t.attn(t.pool(t.conv(t.relu(t.norm(x))))))


def test_vgg_place():
    m = fresh("torchvision vgg11 conv stack")
    layers = list(m)
    attach(m, "se")
    before_pool = [layers[i - 1] for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert all(type(r.attn) is SE for r in before_pool)

    def ref(x):  # after the last layer of each stage, before its max-pool
        for layer in layers:
            x = layer.forward(x)  # .forward: without the hook that applies the module
            if layer in before_pool:
                x = layer.attn(x)
        return x

    check_block(m, torch.randn(1, 3, 32, 32), ref)


# ------------------------------------------------------------------ where=

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*[nn.Sequential() for _ in range(2)])
        for i, stage in enumerate(self.features):
            stage.add_module("conv1", nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1))
            stage.add_module("act", nn.ReLU())
            stage.add_module("conv2", nn.Conv2d(16, 16 * (i + 1), 3, padding=1))
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_where_glob_on_a_users_network():
    net = Net().eval()
    attach(net, "se", where="features.*.conv2")
    convs = [net.features[0].conv2, net.features[1].conv2]
    assert [c.attn.fc1.in_channels for c in convs] == [16, 32]  # read from the model
    x = torch.randn(2, 3, 12, 12)

    def ref(x):
        for stage in net.features:
            x = stage.conv2.attn(stage.conv2.forward(stage.act(stage.conv1(x))))
        return net.head(x.mean((2, 3)))

    check_block(net, x, ref)


def test_where_callable_and_plain_sequential():
    seq = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 12, 3), nn.ReLU())
    attach(seq, "eca", where=lambda name, module: isinstance(module, nn.ReLU))
    assert [type(seq[i].attn).__name__ for i in (2, 4)] == ["EfficientChannelAttention"] * 2
    assert seq(torch.randn(1, 3, 10, 10)).shape == (1, 12, 6, 6)


def test_where_twice_needs_replace_and_swaps_without_a_second_hook():
    net = attach(Net().eval(), "se", where="features.*.conv2")
    with pytest.raises(ValueError, match=r"2 place\(s\) already hold .*features.0.conv2 \(SqueezeExcite\)"):
        attach(net, "eca", where="features.*.conv2")
    hooks = tree(net)[2]
    attach(net, "eca", where="features.*.conv2", replace=True)
    assert tree(net)[2] == hooks and type(net.features[1].conv2.attn).__name__ == "EfficientChannelAttention"
    x = torch.randn(1, 3, 8, 8)
    expected = net.features[0].conv2.attn(net.features[0].conv2.forward(net.features[0].act(net.features[0].conv1(x))))
    torch.testing.assert_close(net.features[0](x), expected)
    with pytest.raises(ValueError, match="matches no module"):  # attention put there is not a place itself
        attach(net, "cbam", where="*attn*")


def test_after_and_before_the_same_module_clash():
    m = attach(fresh("timm convnext_atto"), "se")
    with pytest.raises(ValueError, match="stages.0.blocks.0.drop_path already runs a module before it"):
        attach(m, "eca", where="stages.0.blocks.0.drop_path")


def test_where_overrides_family_rules():
    m = fresh("timm resnext26ts")
    attach(m, "se", where="stages.3.*.conv2_kxk")
    assert count(m, SE) == 2 and m.stages[3][0].conv2_kxk.attn.fc1.in_channels == 512


def test_context_module_goes_where_told_or_after_the_last_block():
    net = attach(Net(), "nonlocal", where="features.*.conv2")
    assert [type(s.conv2.attn).__name__ for s in net.features] == ["NonLocalBlock"] * 2
    m = attach(fresh("timm convnext_atto"), "nonlocal")
    found = [n for n, b in m.named_modules() if type(b).__name__ == "NonLocalBlock"]
    # after the last block, on its output (as ResNet's 'post'): appended to the last stage's Sequential
    assert found == ["stages.3.blocks.attn"]


def test_size_bound_module_in_a_family():
    m = fresh("timm convnext_atto")
    with pytest.raises(ValueError, match=r"attach\(ConvNeXt, 'psa'\): 'psa' is bound to one feature size"):
        attach(m, "psa")
    attach(m, "psa", input_size=(64, 96))
    assert m.stages[3].blocks.attn.feature_size == (2, 3)  # 64 x 96 / 32, after the last block
    assert m(torch.randn(1, 3, 64, 96)).shape == (1, 10)


def test_size_bound_module_with_where():
    net = Net()
    attach(net, "psa", where="features.1.conv2", input_size=(12, 10))
    assert net.features[1].conv2.attn.feature_size == (12, 10)
    assert net(torch.randn(1, 3, 12, 10)).shape == (1, 5)


# ------------------------------------------------------------------ bad input: one line, model unchanged

class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        raise RuntimeError("needs two inputs")


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.unused = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("case", ["no match", "not a feature map", "unreadable", "too small", "not run", "taken",
                                  "no family", "conv role", "own attn"])
def test_bad_input_is_one_line_and_leaves_the_model_unchanged(case):
    model, call, match = {
        "no match": (Net(), lambda m: attach(m, "se", where="layer*.conv2"),
                     r"attach\(Net, 'se'\): where='layer\*.conv2' matches no module of Net; .*features.0.conv1"),
        "not a feature map": (Net(), lambda m: attach(m, "se", where=["features.*.conv2", "head"]),
                              r"output of head is \(1, 5\), not a \(B, C, H, W\) feature map"),
        "unreadable": (Broken(), lambda m: attach(m, "se", where="conv"),
                       r"attach\(Broken, 'se'\): the feature maps cannot be read: .*needs two inputs.*input_size"),
        "too small": (Net(), lambda m: attach(m, "residual_attention", where="features.*.conv2", input_size=(2, 2)),
                      r"needs H >= 3 .* features.0.conv2 is \(2, 2\)"),
        "not run": (Unused(), lambda m: attach(m, "se", where="*"), "unused is not run by Unused's forward"),
        "taken": (fresh("timm efficientnet_b0"), lambda m: attach(m, "se"),
                  r"attach\(EfficientNet, 'se'\): 16 place\(s\) already hold .*blocks.0.0.se"),
        "no family": (nn.Sequential(nn.Conv2d(3, 4, 1)), lambda m: attach(m, "se"), "where="),
        "conv role": (fresh("timm convnext_atto"), lambda m: attach(m, "sk"), "ConvNeXt has no such conv slot"),
        "own attn": (visattn.backbones.create("resnet18"), lambda m: attach(m, "se", where="layer1.0"),
                     "layer1.0 has an attribute `attn` of its own"),
    }[case]
    before = tree(model)
    with pytest.raises(ValueError, match=match) as err:
        call(model)
    assert "\n" not in str(err.value)
    assert tree(model) == before


def test_failure_midway_is_undone():
    """A timm ResNet whose third block already has attention in its se slot: the first two get theirs, then it
    fails (only that place is full: a 'post' module would still go in)."""
    m = timm.create_model("resnet18", pretrained=False).eval()
    m.layer2[0].se = visattn.create("eca", 128)
    before, x = tree(m), torch.randn(1, 3, 32, 32)
    y = m(x)
    with pytest.raises(ValueError, match=r"attach\(ResNet, 'se'\): timm block layer2.0 already has"):
        attach(m, "se")
    assert tree(m) == before
    torch.testing.assert_close(m(x), y)
    # torchvision blocks are rebuilt as visattn blocks on the way: the rebuilt ones are put back
    tv = attach(tvm.resnet18(weights=None), "se", stages=[4]).eval()
    before, y = tree(tv), tv(x)
    with pytest.raises(ValueError, match="block layer4.0 already holds SqueezeExcite"):
        attach(tv, "cbam")
    assert tree(tv) == before and type(tv.layer1[0]).__module__.startswith("torchvision")
    torch.testing.assert_close(tv(x), y)


def test_a_stem_alone_is_not_a_plain_stack():
    stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    with pytest.raises(ValueError, match="no block of a family"):
        attach(nn.Sequential(stem, nn.Conv2d(8, 8, 3)), "se")


@pytest.mark.parametrize("name", ["timm convnext_atto", "torchvision mobilenet_v2"])
def test_attached_models_copy_and_pickle(name):
    m = attach(fresh(name), "se")
    block, channels = (m.stages[0].blocks[0], 40) if "convnext" in name else (m.features[2], 16)
    if hasattr(block, "gamma"):
        with torch.no_grad():
            block.gamma.fill_(1.0)  # layer scale starts at 1e-6: make the branch count
    x, xb = torch.randn(1, 3, 32, 32), torch.randn(1, channels, 8, 8)
    with torch.no_grad():
        y, yb = m(x), block(xb)
        torch.testing.assert_close(copy.deepcopy(m)(x), y)
        torch.testing.assert_close(pickle.loads(pickle.dumps(m))(x), y)
        for se in (s for s in block.modules() if type(s) is SE):
            se.fc2.bias.fill_(-30.0)  # the gate shut: the module really runs in the block
        assert not torch.allclose(block(xb), yb, atol=1e-3)


def test_modules_follow_the_model_device_and_dtype():
    m = fresh("timm convnext_atto").double()
    attach(m, "cbam")
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    with torch.device("meta"):
        meta = tvm.vgg11()
    attach(meta, "se")  # no dry run needed: channels come from the convs
    assert all(p.is_meta for p in meta.parameters()) and count(meta, SE) == 5


# ------------------------------------------------------- the attach guide's family table runs as written

README = Path(__file__).resolve().parents[2] / "docs" / "attach.md"  # the README's attach section moved there


def readme_family_examples():
    section = README.read_text().split("# Putting modules into networks", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`attach(" in line]
    return [re.findall(r"`(attach\(.*\))`\s*\|\s*$", row)[0] for row in rows]


def test_readme_lists_every_family():
    section = README.read_text().split("# Putting modules into networks", 1)[1]
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    assert {f.name.split(" (torchvision)")[0] for f in FAMILIES} <= rows
    assert len(readme_family_examples()) == 9


@pytest.mark.parametrize("code", readme_family_examples())
def test_readme_family_example_runs(code):
    namespace = {"attach": attach, "timm": timm, "torchvision": torchvision, "nn": nn}
    with torch.device("meta"):  # the structure is all that matters here; the forwards are checked above
        model = eval(code, namespace)  # noqa: S307  (the README's own code)
    assert any(type(m).__module__.startswith("visattn.modules") for m in model.modules())


def test_readme_timm_attn_layer_example_runs():
    block = re.search(r"```python\n(import timm, visattn\n.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    with torch.device("meta"):
        exec(block, namespace)  # noqa: S102
    model = namespace["model"]
    assert type(model.layer1[0].se) is CBAM and model.layer1[0].se.channel_gate.mlp[1].out_features == 64 // 8
