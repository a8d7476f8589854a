"""A timm encoder (features_only, output stride 8 / 16) under every decode head, with local pretrained weights."""

import pytest
import torch

from visattn.segmentation import HEADS, TimmEncoder, create_segmenter
from visattn.weights import WeightsError

timm = pytest.importorskip("timm")
NAME = "resnet10t"  # timm's smallest ResNet


@pytest.mark.parametrize("output_stride, last", [(8, 8), (16, 4)])
def test_encoder_gives_four_levels_at_the_output_stride(output_stride, last):
    enc = TimmEncoder(NAME, output_stride=output_stride, in_chans=1)
    feats = enc(torch.randn(1, 1, 64, 64))
    assert [f.shape[1] for f in feats] == enc.out_channels == [64, 128, 256, 512]
    assert feats[-1].shape[-2:] == (last, last) and feats[0].shape[-1] == 16


@pytest.mark.parametrize("head", list(HEADS))
def test_every_decode_head_on_a_timm_encoder(head):
    model = create_segmenter(head, 4, backbone=f"timm:{NAME}", channels=32, input_size=(40, 48)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 48))["out"]
    assert out.shape == (1, 4, 40, 48) and torch.isfinite(out).all()


def test_pretrained_weights_load_from_a_local_file_and_the_classifier_is_dropped(tmp_path):
    source = timm.create_model(NAME, num_classes=7)
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)
    model = create_segmenter("fcn", 4, backbone=f"timm:{NAME}", channels=32, pretrained=str(path))
    encoder = model.backbone.body.state_dict()
    assert encoder and all(torch.equal(v, source.state_dict()[k]) for k, v in encoder.items())
    fresh = create_segmenter("fcn", 4, backbone=f"timm:{NAME}", channels=32)
    assert not torch.equal(fresh.backbone.body.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


def test_weights_of_another_network_name_the_first_bad_key(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(WeightsError, match=r"r18.pth: no weights for timm:resnet10t's 'conv1.0.weight'"):
        TimmEncoder(NAME, pretrained=path)
    torch.save({k: v[:1] if k == "layer1.0.conv1.weight" else v
                for k, v in timm.create_model(NAME).state_dict().items()}, path)
    with pytest.raises(WeightsError, match=r"'layer1.0.conv1.weight' has shape \(1, 64, 3, 3\) in the file"):
        TimmEncoder(NAME, pretrained=path)


def test_unknown_names_and_misplaced_weights_are_one_line():
    with pytest.raises(ValueError, match="unknown timm model 'resnet10x'. Did you mean timm:resnet10t"):
        create_segmenter("fcn", 2, backbone="timm:resnet10x")
    with pytest.raises(ValueError, match="pretrained weights are for a timm:NAME encoder"):
        create_segmenter("fcn", 2, backbone="tiny", pretrained="x.pt")
