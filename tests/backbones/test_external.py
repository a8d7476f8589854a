import json

import pytest
import torch

import visattn
from visattn.backbones import create
from visattn.backbones.external import classifier_from_spec, create_classifier, preprocessing_for

pytest.importorskip("timm")
pytest.importorskip("torchvision")


def rebuilt_equal(model, spec, shape):
    again = classifier_from_spec(json.loads(json.dumps(spec)))  # the spec survives a run folder's JSON
    again.load_state_dict(model.state_dict(), strict=True)
    model.eval(), again.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(again(x), model(x))


@pytest.mark.parametrize("backbone, options, shape", [
    ("timm:resnet10t", {"attention": "cbam:reduction=8"}, (1, 3, 64, 64)),
    ("tv:resnet18", {"attention": "se", "in_chans": 1}, (1, 1, 64, 64)),
    ("resnet20", {"attention": "eca", "in_chans": 1}, (2, 1, 28, 28)),
    ("timm:resnet10t", {"attention": "simam", "where": "layer*.0.act2"}, (1, 3, 64, 64)),
    ("tv:mobilenet_v3_small", {"attention": "eca", "replace": True}, (1, 3, 64, 64)),
])
def test_spec_rebuilds_the_same_model(backbone, options, shape):
    model, spec = create_classifier(backbone, num_classes=5, **options)
    assert model(torch.randn(shape)).shape == (shape[0], 5)
    rebuilt_equal(model, spec, shape)


def test_attention_goes_where_attach_puts_it():
    model, spec = create_classifier("timm:resnet10t", num_classes=4, attention="se:reduction=8")
    assert spec["attention"] == "se" and spec["attention_kwargs"] == {"reduction": 8}
    assert type(model.layer1[0].se).__name__ == "SqueezeExcite"
    plain, _ = create_classifier("timm:resnet10t", num_classes=4)
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in plain.parameters())


def test_where_places_the_module_after_matching_names():
    model, _ = create_classifier("tv:resnet18", num_classes=3, attention="cbam", where="layer4.1.bn2")
    names = [n for n, m in model.named_modules() if type(m).__name__ == "CBAM"]
    assert len(names) == 1 and names[0].startswith("layer4.1.bn2")


def test_replace_swaps_the_networks_own_se():
    eca = visattn.info("eca").cls
    model, _ = create_classifier("tv:mobilenet_v3_small", num_classes=3, attention="eca", replace=True)
    kinds = [type(m).__name__ for m in model.modules()]
    assert "SqueezeExcitation" not in kinds
    assert sum(isinstance(m, eca) for m in model.modules()) == 9  # MobileNetV3-Small's nine SE blocks


@pytest.mark.parametrize("name, suggestion", [("timm:resnet50x", "timm:resnet50"), ("tv:resnet19", "tv:resnet18")])
def test_unknown_name_suggests_the_closest(name, suggestion):
    with pytest.raises(ValueError, match=suggestion) as err:
        create_classifier(name, num_classes=3)
    assert "\n" not in str(err.value)


def test_unknown_prefix_and_own_name():
    with pytest.raises(ValueError, match="timm:NAME, tv:NAME"):
        create_classifier("hf:resnet", num_classes=3)
    with pytest.raises(KeyError, match="resnet20"):
        create_classifier("resnet21", num_classes=3)


def test_bad_attention_spec_is_one_value_error():
    with pytest.raises(ValueError, match="unknown module 'cbma'"):
        create_classifier("timm:resnet10t", num_classes=3, attention="cbma")


def test_spec_refuses_unknown_fields():
    _, spec = create_classifier("resnet20", num_classes=3)
    with pytest.raises(ValueError, match="unknown field"):
        classifier_from_spec({**spec, "colour": "red"})


def test_own_create_takes_module_keywords_like_attach():
    model = create("resnet20", "se", reduction=8)
    assert model.layer1[0].attn.fc1.out_channels == 2  # 16 channels / 8
    with pytest.raises(TypeError, match="need an attention key"):
        create("resnet20", reduction=8)
    with pytest.raises(TypeError, match="reductoin"):
        create("resnet20", "se", reductoin=8)


def test_preprocessing_from_timm_and_torchvision_meta():
    timm_cfg = preprocessing_for("timm:resnet10t")
    assert timm_cfg["input_size"] == [176, 176] and timm_cfg["interpolation"] == "bicubic"
    tv_cfg = preprocessing_for("tv:resnet18")
    assert tv_cfg["input_size"] == [224, 224] and tv_cfg["std"] == [0.229, 0.224, 0.225]
    assert preprocessing_for("resnet20") is None


def test_input_size_the_network_cannot_take_is_one_line():
    from visattn.backbones.external import check_input_size

    vit, _ = create_classifier("timm:vit_tiny_patch16_224", num_classes=3)
    check_input_size(vit, 3, 224)
    with pytest.raises(ValueError, match=r"input size 64x64 does not fit timm:vit_tiny_patch16_224: ") as err:
        check_input_size(vit, 3, 64, name="timm:vit_tiny_patch16_224")
    assert "\n" not in str(err.value)
    psa, _ = create_classifier("resnet20", num_classes=3, attention="psa", input_size=32)
    with pytest.raises(ValueError, match="input size 16x16 does not fit CifarResNet"):
        check_input_size(psa, 3, 16)
