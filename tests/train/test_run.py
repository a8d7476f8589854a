"""visattn.load_run: a run folder opened as config, task, model with weights, preprocessing and class names."""

import pytest
import torch

import visattn
from visattn.train import TrainConfig, train


def test_load_run_gives_the_trained_model_and_its_preprocessing(tiny_fmnist, tmp_path):
    from visattn.data.fashion_mnist import CLASSES

    out = tmp_path / "run"
    config = TrainConfig(backbone="plaincnn", data_dir=str(tiny_fmnist), epochs=1, batch_size=16, train_limit=32,
                         val_limit=16, device="cpu", model_ema=True, model_ema_decay=0.5)
    train(config, out, progress=False, log=lambda *a, **k: None)
    run = visattn.load_run(out)
    assert isinstance(run, visattn.Run) and run.config == TrainConfig.from_dict(config.to_dict())
    assert run.class_names == list(CLASSES) and run.epoch == 1 and not run.model.training
    assert run.preprocessing["channels"] == 1 and len(run.preprocessing["mean"]) == 1
    state = torch.load(out / "checkpoints" / "epoch-001.pt", weights_only=True)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key
    ema = visattn.load_run(out, ema=True)
    assert any(not torch.equal(v, state["model"][k]) for k, v in ema.model.state_dict().items())


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run folder") as caught:
        visattn.load_run(tmp_path)
    assert "\n" not in str(caught.value)


class Payload:
    """A pickle that would import (run) code on loading: refused without running it."""


@pytest.fixture
def small_run(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(backbone="plaincnn", data_dir=str(tiny_fmnist), epochs=1, batch_size=16, train_limit=32,
                         val_limit=16, device="cpu")
    train(config, out, progress=False, log=lambda *a, **k: None)
    return out


def test_read_checkpoint_names_a_damaged_file_and_a_pickle_carrying_code(tmp_path):
    from visattn.train.checkpoint import CheckpointError, read_checkpoint

    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"\x00torn")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(torn)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{torn} is unreadable: not a visattn checkpoint")
    assert "Weights only load failed" not in message and "truncated / damaged" in message
    code = tmp_path / "code.pt"
    torch.save({"model": Payload(), "epoch": 1}, code)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(code)
    assert "\n" not in str(caught.value) and "Python objects beyond tensors" in str(caught.value)
    plain = tmp_path / "plain.pt"
    torch.save({"epoch": 1}, plain)
    with pytest.raises(CheckpointError, match="no 'model' in it"):
        read_checkpoint(plain)


def test_a_run_whose_only_checkpoint_is_damaged_is_one_line_with_the_reason(small_run):
    (small_run / "checkpoints" / "epoch-001.pt").write_bytes(b"\x00torn")
    notes = []
    with pytest.raises(ValueError) as caught:
        visattn.load_run(small_run, report=notes.append)
    message = str(caught.value)
    assert "\n" not in message and "no readable checkpoint" in message and "truncated / damaged" in message
    assert len(notes) == 1 and "epoch-001.pt is unreadable" in notes[0]


def test_an_older_run_without_run_json_still_opens(small_run):
    new = visattn.load_run(small_run)
    (small_run / "run.json").unlink()
    old = visattn.load_run(small_run)
    assert old.class_names == new.class_names and old.spec == new.spec
    assert old.preprocessing["mean"] == pytest.approx(new.preprocessing["mean"])
    for key, value in old.model.state_dict().items():
        assert torch.equal(value, new.model.state_dict()[key]), key


def test_normalize_treats_uint8_and_float_images_alike_and_matches_training(small_run):
    from visattn.data.loader import load_dataset

    run = visattn.load_run(small_run)
    config = run.config
    _, val = load_dataset(config.dataset, config.data_dir, train_limit=config.train_limit, val_limit=config.val_limit,
                          subset_seed=config.subset_seed)
    images = val.images[:4]
    expected = (images.float() / 255 - torch.tensor(val.mean).view(-1, 1, 1)) / torch.tensor(val.std).view(-1, 1, 1)
    assert torch.allclose(run.normalize(images), expected, atol=1e-6)
    assert torch.allclose(run.normalize(images.float() / 255), expected, atol=1e-6)
    with pytest.raises(ValueError, match="trained on 1-channel images, got 3"):
        run.normalize(torch.zeros(2, 3, 8, 8))
