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
