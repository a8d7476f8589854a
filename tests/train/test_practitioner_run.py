"""The practitioner's path through the trainer: any backbone, real resolution, pretrained weights, honest limits."""

import json

import pytest
import torch

from visattn.backbones.external import classifier_from_spec
from visattn.train.config import TrainConfig
from visattn.train.trainer import train
from visattn.weights import WeightsError

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 6 training images of different sizes and colours, listed class by class."""
    root = tmp_path_factory.mktemp("images")
    for split, n in (("train", 6), ("val", 3)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            sub = root / split / f"class{c}"
            sub.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + 3 * i, 30 + 2 * c), colour).save(sub / f"{i}.png")
    return root


def config(folder, **kw):
    base = {"backbone": "resnet20", "dataset": "image-folder", "data_dir": str(folder), "img_size": 24, "epochs": 1,
            "batch_size": 4, "workers": 0, "device": "cpu", "lr": 0.05}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def first_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "first"
    result = train(config(folder, attention="se", train_limit=6, val_limit=3), out, progress=False, log=lambda *a: None)
    return out, result


def test_run_saves_spec_preprocessing_and_classes(first_run):
    out, _ = first_run
    info = json.loads((out / "run.json").read_text())
    assert info["classes"] == ["class0", "class1", "class2"]
    assert info["preprocessing"]["input_size"] == [24, 24] and info["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    model = classifier_from_spec(info["model"])
    state = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], weights_only=True)["model"]
    model.load_state_dict(state)  # the spec rebuilds exactly the trained architecture
    assert model(torch.zeros(1, 3, 24, 24)).shape == (1, 3)


def test_limits_on_a_class_sorted_folder_are_stratified(folder, tmp_path):
    from visattn.train.tasks import ClassificationTask

    train_data, val_data = ClassificationTask().load_data(config(folder, train_limit=6, val_limit=3))
    assert sorted(train_data.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(val_data.labels.tolist()) == [0, 1, 2]


def test_fine_tune_from_a_run_with_new_attention(first_run, folder, tmp_path):
    out, _ = first_run
    lines = []
    train(config(folder, attention="cbam", pretrained=str(out)), tmp_path / "tuned", progress=False, log=lines.append)
    text = "\n".join(lines)
    assert "tensors loaded" in text and "attention module (CBAM)" in text


def test_pretrained_that_does_not_fit_is_one_line(first_run, folder, tmp_path):
    out, _ = first_run
    with pytest.raises(WeightsError, match=r"layer1\.3\.conv1\.weight is not in the file") as err:
        train(config(folder, backbone="resnet32", pretrained=str(out)), tmp_path / "bad", progress=False,
              log=lambda *a: None)
    assert "\n" not in str(err.value)


def test_image_size_the_network_cannot_take(folder, tmp_path):
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="input size 32x32 does not fit timm:vit_tiny_patch16_224: Input height"):
        train(config(folder, backbone="timm:vit_tiny_patch16_224", img_size=32), tmp_path / "small", progress=False,
              log=lambda *a: None)


def test_config_checks():
    with pytest.raises(ValueError, match="img_size .* applies to image-folder"):
        TrainConfig(dataset="fashion-mnist", img_size=64)
    baseline = TrainConfig(where="layer1.*", replace=True)  # compare's plain network beside attention variants
    assert baseline.where is None and baseline.replace is False
    with pytest.raises(ValueError, match="timm:NAME, tv:NAME"):
        TrainConfig(backbone="hf:resnet")
    with pytest.raises(ValueError, match="Did you mean timm:resnet50"):
        TrainConfig(backbone="timm:resnet50x", dataset="image-folder", data_dir="x")


def test_timm_backbone_takes_its_pretrained_input_size():
    pytest.importorskip("timm")
    assert TrainConfig(backbone="timm:resnet10t", dataset="image-folder", data_dir="x").img_size == 176


def test_recorded_runs_keep_their_first_samples_and_names():
    new = TrainConfig(train_limit=3000, val_limit=1000)
    assert new.subset_seed == 0
    recorded = new.to_dict()
    del recorded["subset_seed"]  # config.json of a run made before limits were stratified
    old = TrainConfig.from_dict(recorded)
    assert old.subset_seed is None
    assert old.digest() == "b3461454"  # the folder name those runs were saved under
    assert TrainConfig().digest() == "e2797a31"  # without limits, names are unchanged
    assert new.digest() != old.digest()


def test_compare_measures_cost_at_the_real_resolution(tmp_path):
    from visattn.train.tasks import get_task

    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
    config = TrainConfig(dataset="image-folder", data_dir=str(tmp_path), img_size=48)
    _, shape = get_task(config).model_and_input(config)
    assert shape == (1, 3, 48, 48)
