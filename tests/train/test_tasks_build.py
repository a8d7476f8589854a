"""The Task builds a run's model from the data set's registered facts, without reading any data.

``visattn compare`` measures each variant's cost on this model; it once guessed 10 classes for every data
set but CIFAR-100 (an image folder of 3 classes was costed with a 10-way head).
"""

import pytest

from visattn.train import TrainConfig
from visattn.train.tasks import get_task


def _model_and_input(config):
    return get_task(config).model_and_input(config)


def test_an_image_folder_of_three_classes_builds_a_three_class_head_without_reading_images(tmp_path):
    for name in ("ant", "bee", "cat"):
        (tmp_path / "train" / name).mkdir(parents=True)  # no image at all: nothing is decoded
    (tmp_path / "val").mkdir()
    config = TrainConfig(backbone="resnet20", dataset="image-folder", data_dir=str(tmp_path), image_size=32,
                         device="cpu")
    model, shape = _model_and_input(config)
    assert list(model.parameters())[-1].shape[0] == 3 and shape == (1, 3, 32, 32)


def test_a_registered_data_set_gives_its_own_class_count():
    model, shape = _model_and_input(TrainConfig(backbone="resnet20", dataset="cifar100", device="cpu"))
    assert list(model.parameters())[-1].shape[0] == 100 and shape == (1, 3, 32, 32)
    model, shape = _model_and_input(TrainConfig(backbone="resnet20", dataset="fashion-mnist", device="cpu"))
    assert list(model.parameters())[-1].shape[0] == 10 and shape[1] == 1


def test_an_image_folder_without_its_folder_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="needs --data-dir"):
        _model_and_input(TrainConfig(backbone="resnet20", dataset="image-folder", device="cpu"))
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        _model_and_input(TrainConfig(backbone="resnet20", dataset="image-folder", data_dir=str(tmp_path),
                                     device="cpu"))
