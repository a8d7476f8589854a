import json
import warnings

import pytest
import torch

from tests._interrupt import interrupt_after_first_checkpoint
from visattn.train import TrainConfig, train
from visattn.train.checkpoint import CorruptCheckpointWarning, checkpoint_paths, load_latest
from visattn.train.tasks import ClassificationTask
from visattn.train.trainer import ConfigMismatchError


def config(data, **kw):
    base = dict(backbone="resnet20", attention="se", data_dir=str(data), epochs=2, batch_size=16, lr=0.05,
                train_limit=64, val_limit=32, seed=3, device="cpu")
    return TrainConfig(**(base | kw))


def quiet(*args, **kwargs):
    pass


def test_run_writes_metrics_checkpoints_result(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    logged: list[str] = []
    result = train(config(tiny_fmnist), out, progress=False, log=logged.append)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert [m.split(":")[0] for m in logged if m.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "images_per_s"} <= set(lines[0])
    saved = json.loads((out / "result.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and 0 <= saved["accuracy"] <= 100
    assert saved["params"] > 0 and saved["flops"] > 0 and saved["config"]["attention"] == "se"
    ckpts = checkpoint_paths(out / "checkpoints")
    assert [p.name for p in ckpts] == ["epoch-002.pt", "epoch-001.pt"]
    state = torch.load(ckpts[0], weights_only=True)
    assert state["epoch"] == 2 and "model" in state
    assert not list((out / "checkpoints").glob(".*"))  # no temp files left


def test_finished_run_is_not_trained_again(tiny_fmnist, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = train(config(tiny_fmnist), out, progress=False, log=quiet)
    monkeypatch.setattr(ClassificationTask, "load_data", lambda *a, **k: pytest.fail("trained again"))
    assert train(config(tiny_fmnist), out, progress=False, log=quiet) == first


def test_interrupted_run_resumes_to_the_same_weights(tiny_fmnist, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(config(tiny_fmnist), straight, progress=False, log=quiet)

    out = tmp_path / "interrupted"
    interrupt_after_first_checkpoint(monkeypatch, lambda: train(config(tiny_fmnist), out, progress=False, log=quiet))
    assert not (out / "result.json").exists()
    messages = []
    train(config(tiny_fmnist), out, progress=False, log=messages.append)
    assert any("resuming" in m and "epoch-001.pt" in m for m in messages)
    a = torch.load(out / "checkpoints" / "epoch-002.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "epoch-002.pt", weights_only=True)["model"]
    for k in b:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_corrupt_checkpoint_falls_back_to_previous(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_fmnist), out, progress=False, log=quiet)
    (out / "result.json").unlink()
    (out / "checkpoints" / "epoch-002.pt").write_bytes(b"\x00garbage")
    messages = []
    result = train(config(tiny_fmnist), out, progress=False, log=messages.append)
    # one readable line: which file, why, and which one is used instead; no traceback
    corrupt = [m for m in messages if "epoch-002.pt" in m and "unreadable" in m]
    assert len(corrupt) == 1 and "\n" not in corrupt[0] and "trying the previous one, epoch-001.pt" in corrupt[0]
    assert any("resuming" in m and "epoch-001.pt" in m for m in messages) and result["epochs"] == 2
    assert torch.load(out / "checkpoints" / "epoch-002.pt", weights_only=True)["epoch"] == 2
    # the library call without a report callback still warns, with the same one line
    (out / "checkpoints" / "epoch-002.pt").write_bytes(b"\x00garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, path = load_latest(out / "checkpoints")
    assert path.name == "epoch-001.pt"
    assert [str(w.message).count("\n") for w in caught if issubclass(w.category, CorruptCheckpointWarning)] == [0]


def test_different_recipe_in_same_folder_is_refused(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_fmnist, epochs=1), out, progress=False, log=quiet)
    with pytest.raises(ConfigMismatchError, match="attention"):
        train(config(tiny_fmnist, epochs=1, attention="eca"), out, progress=False, log=quiet)


def test_more_epochs_extends_a_finished_run(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    train(config(tiny_fmnist, epochs=1), out, progress=False, log=quiet)
    with pytest.warns(UserWarning, match="schedule restarts"):
        result = train(config(tiny_fmnist, epochs=2), out, progress=False, log=quiet)
    assert result["epochs"] == 2
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_bad_config_values():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="pad"):
        TrainConfig(pad=-1)
    assert TrainConfig().pad == 0 and TrainConfig(dataset="cifar10").pad == 4 and TrainConfig(pad=2).pad == 2
