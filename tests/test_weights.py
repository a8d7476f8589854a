import os

import pytest
import torch

from visattn.backbones.external import create_classifier
from visattn.weights import WeightsError, classifier_name, load_pretrained, read_state_dict

pytest.importorskip("timm")


@pytest.fixture(scope="module")
def timm_source(tmp_path_factory):
    """A timm resnet10t with 1000 classes saved as a plain state_dict: what a user downloads by hand."""
    model, _ = create_classifier("timm:resnet10t", num_classes=1000)
    path = tmp_path_factory.mktemp("w") / "resnet10t.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_backbone_loads_attention_and_new_classifier_start_fresh(timm_source):
    source, path = timm_source
    model, spec = create_classifier("timm:resnet10t", num_classes=5, attention="cbam")
    report = load_pretrained(model, path, spec=spec)
    assert report.fresh["fc"] == "classifier: 1000 outputs in the file, 5 in this model"
    attention = [n for n, why in report.fresh.items() if why.startswith("attention module")]
    assert len(attention) == 4 and all(n.endswith(".se") for n in attention)  # timm's se slot, 1 block a stage
    ref = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc.") and ".se." not in key:
            assert torch.equal(value, ref[key]), key
    assert report.loaded == len([k for k in ref if not k.startswith("fc.")])
    text = str(report)
    assert "starts fresh: fc (classifier" in text and "tensors loaded" in text
    assert report.preprocessing["input_size"] == [176, 176]  # timm's pretrained_cfg of resnet10t


def test_same_classes_load_the_classifier_too(timm_source):
    source, path = timm_source
    model, _ = create_classifier("timm:resnet10t", num_classes=1000)
    report = load_pretrained(model, path)
    assert report.fresh == {} and torch.equal(model.fc.weight, source.fc.weight)


def test_shape_mismatch_names_the_first_bad_key(tmp_path):
    small, _ = create_classifier("resnet20", num_classes=10)
    path = tmp_path / "r20.pt"
    torch.save(small.state_dict(), path)
    other, _ = create_classifier("resnet20", num_classes=10, backbone_kwargs={"widths": (8, 16, 32)})
    with pytest.raises(WeightsError, match=r"conv1\.weight does not fit: \(16, 3, 3, 3\) in the file") as err:
        load_pretrained(other, path)
    assert "\n" not in str(err.value)


def test_missing_weight_is_refused(tmp_path):
    model, _ = create_classifier("resnet20", num_classes=10)
    state = model.state_dict()
    del state["layer2.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv1\.weight is not in the file"):
        load_pretrained(create_classifier("resnet20", num_classes=10)[0], tmp_path / "partial.pt")


def test_torchvision_weights_into_grey_input_are_adapted(tmp_path):
    pytest.importorskip("torchvision")
    rgb, _ = create_classifier("tv:resnet18", num_classes=1000)
    torch.save({"state_dict": {f"module.{k}": v for k, v in rgb.state_dict().items()}}, tmp_path / "ddp.pth")
    grey, spec = create_classifier("tv:resnet18", num_classes=3, in_chans=1, attention="se")
    report = load_pretrained(grey, tmp_path / "ddp.pth", spec=spec)
    assert report.adapted == {"conv1.weight": "input channels 3 -> 1"}
    torch.testing.assert_close(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    assert "layer1.0.attn" in report.fresh and report.fresh["fc"].startswith("classifier")


class RunsCode:
    """Unpickling this calls a function: what a malicious 'weights' file does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": RunsCode(marker)}, path)
    assert not marker.exists()
    model, _ = create_classifier("resnet20", num_classes=10)
    with pytest.raises(WeightsError, match="refused: it holds pickled code") as err:
        load_pretrained(model, path)
    assert "\n" not in str(err.value)
    assert not marker.exists()  # the code did not run


def test_safetensors_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model, _ = create_classifier("resnet20", num_classes=10)
    safetensors.save_file(model.state_dict(), str(tmp_path / "r20.safetensors"))
    fresh, _ = create_classifier("resnet20", num_classes=10)
    report = load_pretrained(fresh, tmp_path / "r20.safetensors")
    assert report.loaded == len(model.state_dict())
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)


def test_run_folder_newest_checkpoint(tmp_path):
    model, _ = create_classifier("resnet20", num_classes=10, in_chans=1)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 1, "model": {k: torch.zeros_like(v) for k, v in model.state_dict().items()}},
               tmp_path / "checkpoints" / "epoch-001.pt")
    torch.save({"epoch": 2, "model": model.state_dict()}, tmp_path / "checkpoints" / "epoch-002.pt")
    target, _ = create_classifier("resnet20", num_classes=4, in_chans=1, attention="cbam")
    report = load_pretrained(target, tmp_path)
    assert torch.equal(target.conv1.weight, model.conv1.weight)
    assert read_state_dict(tmp_path)[1].name == "epoch-002.pt"
    assert report.fresh["fc"].startswith("classifier: 10 outputs")


def test_unreadable_and_not_weights(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(WeightsError, match="not a readable weights file"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a visattn run"):
        read_state_dict(tmp_path)


def test_classifier_names():
    assert classifier_name(create_classifier("timm:resnet10t", num_classes=3)[0]) == "fc"
    assert classifier_name(create_classifier("tv:mobilenet_v3_small", num_classes=3)[0]) == "classifier.3"
