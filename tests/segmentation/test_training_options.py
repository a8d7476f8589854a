"""A segmentation run's ignore index, class weights and sliding-window evaluation, through the Task."""

import pytest
import torch

from visattn.data.seg_folders import IGNORE_INDEX
from visattn.segmentation.loss import segmentation_loss
from visattn.train.config import TrainConfig
from visattn.train.tasks import SegmentationTask

SCENES = dict(task="segmentation", dataset="fashion-scenes", backbone="tiny", head="fcn", scene_size=32)


def test_recorded_run_names_stay():
    # digests main computed before these options existed (new fields hash only when set)
    assert TrainConfig(task="segmentation", head="cc", dataset="fashion-scenes", backbone="tiny").digest() == "cf0dffef"
    assert TrainConfig().digest() == "e2797a31"
    assert TrainConfig(**SCENES, eval_mode="slide").digest() != TrainConfig(**SCENES).digest()


@pytest.mark.parametrize("options, message", [
    ({"eval_mode": "sliding"}, "eval_mode must be 'whole' or 'slide'"),
    ({"ignore_index": -1}, "ignore_index must be a label >= 0"),
    ({"class_weights": [1.0, -2.0]}, "finite and >= 0"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**SCENES, **options)


def test_segmentation_options_on_a_classification_run_are_refused():
    with pytest.raises(ValueError, match="apply to segmentation runs"):
        TrainConfig(eval_mode="slide")


def test_class_weights_must_match_the_classes_before_any_data_is_read():
    with pytest.raises(ValueError, match="3 given for 11 classes"):
        SegmentationTask().build_model(TrainConfig(**SCENES, class_weights=[1, 2, 3]))


def test_the_task_loss_uses_the_runs_ignore_index_and_class_weights():
    weights = [float(k + 1) for k in range(11)]
    config = TrainConfig(**SCENES, ignore_index=0, class_weights=weights)
    model = SegmentationTask().build_model(config)
    g = torch.Generator().manual_seed(0)
    output = {name: torch.randn(2, 11, 6, 7, generator=g) for name in model.loss_weights}
    target = torch.randint(0, 11, (2, 6, 7), generator=g)
    target[0, 0] = IGNORE_INDEX
    got = SegmentationTask().loss(model, config, output, target)
    assert torch.allclose(got, segmentation_loss(output, target, model.loss_weights, ignore_index=0,
                                                 class_weight=weights))
    assert not torch.allclose(got, segmentation_loss(output, target, model.loss_weights))


def test_slide_evaluation_uses_the_training_crop():
    model = SegmentationTask().build_model(TrainConfig(**SCENES, eval_mode="slide"))
    assert model.eval_mode == "slide" and model.crop_size == (32, 32)
    assert SegmentationTask().build_model(TrainConfig(**SCENES)).eval_mode == "whole"


def test_a_timm_encoder_starts_from_a_local_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    source = timm.create_model("resnet10t", in_chans=1, num_classes=5)  # scenes are grey
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)
    config = TrainConfig(**{**SCENES, "backbone": "timm:resnet10t"}, pretrained=str(path))
    model = SegmentationTask().build_model(config)
    assert torch.equal(model.backbone.body.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert SegmentationTask.pretrained_in_build  # the trainer leaves the loading to build_model
    with pytest.raises(ValueError, match="timm:NAME segmentation encoder"):
        TrainConfig(**SCENES, pretrained=str(path))
