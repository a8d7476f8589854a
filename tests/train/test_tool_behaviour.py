"""What the trainer does around the model: evaluation, the training order, and a crash while saving.

Each test names one behaviour and fails on the realistic bug next to it (evaluation in training mode or with
augmentation, a loader that does not shuffle, a checkpoint written straight to its final path).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from visattn.data import loader as loader_mod
from visattn.data.loader import BatchLoader, ImageData
from visattn.train import TrainConfig, train
from visattn.train import classifier as classifier_mod
from visattn.train.checkpoint import checkpoint_paths, save_checkpoint
from visattn.train.distributed import DistInfo


def quiet(*args, **kwargs):
    pass


def config(data, **kw):
    base = dict(backbone="resnet20", attention="se", data_dir=str(data), epochs=2, batch_size=16, lr=0.05,
                train_limit=64, val_limit=32, seed=3, device="cpu")
    return TrainConfig(**(base | kw))


def _val_data(n: int = 600, size: int = 8) -> ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return ImageData(images, torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(10)], (0.4,), (0.3,))


def test_evaluate_is_an_eval_mode_pass_over_unaugmented_normalised_images():
    cfg = TrainConfig(backbone="resnet20", attention="se", device="cpu", dataset="fashion-mnist", pad=4)
    torch.manual_seed(0)
    model = classifier_mod.build_model(cfg, 1, 10)
    data = _val_data()
    with torch.no_grad():  # give BatchNorm running statistics that differ from any one batch's statistics
        model.train()
        for _ in range(3):
            model(torch.randn(8, 1, 8, 8) * 3 + 1)
    # labels that the eval-mode model gets right for the first half: the accuracy is then far from chance
    x = (data.images.float() / 255 - 0.4) / 0.3  # hand-written: no crop, no flip, the data's mean and std
    model.eval()
    with torch.no_grad():
        logits = model(x)
    data.labels[:300] = logits[:300].argmax(1)
    expected_acc = 100.0 * (logits.argmax(1) == data.labels).double().mean().item()
    expected_loss = nn.functional.cross_entropy(logits, data.labels).item()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    acc, loss, _ = classifier_mod.evaluate(model, data, cfg, torch.device("cpu"), DistInfo())

    assert acc == pytest.approx(expected_acc, abs=1e-9) and acc > 50
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    after = model.state_dict()
    for k, v in before.items():  # BatchNorm running statistics (and everything else) unchanged
        assert torch.equal(after[k], v), f"evaluate() changed {k}"
    assert model.training  # handed back in training mode


def test_training_order_is_shuffled_and_differs_between_epochs(tiny_fmnist, tmp_path, monkeypatch):
    orders: list[list[int]] = []

    class Recording(BatchLoader):
        def _indices(self):
            idx = super()._indices()
            if self.augment:  # the training loader (evaluation reads its data in order)
                orders.append(idx.tolist())
            return idx

    monkeypatch.setattr(loader_mod, "BatchLoader", Recording)  # what make_loader builds for in-memory data
    train(config(tiny_fmnist, epochs=2), tmp_path / "run", progress=False, log=quiet)
    assert len(orders) == 2
    for order in orders:
        assert sorted(order) == list(range(64))  # each epoch sees every training image once
        assert order != list(range(64))  # shuffled
    assert orders[0] != orders[1]  # a new order each epoch


def test_loader_yields_the_images_of_its_order():
    data = _val_data(10)
    loader = BatchLoader(data, 4, shuffle=True, seed=2)
    loader.set_epoch(3)
    idx = loader._indices()
    x = torch.cat([b for b, _ in loader])
    torch.testing.assert_close(x, (data.images[idx].float() / 255 - 0.4) / 0.3)
    assert idx.tolist() != list(range(10))


@pytest.mark.parametrize("n,world", [(11, 3), (12, 3), (7, 2), (5, 4)])
def test_ddp_shards_are_disjoint_and_cover_the_epoch(n, world):
    data = ImageData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n), ["a"], (0.5,), (0.5,))
    per_rank = -(-n // world)
    for epoch in (1, 2):
        shards = []
        for rank in range(world):
            loader = BatchLoader(data, 2, shuffle=True, seed=5, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            shards.append(torch.cat([y for _, y in loader]).tolist())
        assert all(len(s) == per_rank for s in shards)  # DistributedSampler's contract: equal shards
        everything = [i for s in shards for i in s]
        assert set(everything) == set(range(n))  # together they cover the epoch
        padding = per_rank * world - n
        assert len(everything) - len(set(everything)) == padding  # only the documented wrap-around repeats
        for a in range(world):
            for b in range(a + 1, world):
                shared = set(shards[a]) & set(shards[b])
                assert len(shared) <= padding, f"ranks {a} and {b} share {shared}"
        if padding == 0:
            assert sorted(everything) == list(range(n))


def test_crash_inside_torch_save_keeps_the_previous_checkpoint(tiny_fmnist, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(config(tiny_fmnist, epochs=1), out, progress=False, log=quiet)
    good = out / "checkpoints" / "epoch-001.pt"
    before = good.read_bytes()
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):  # writes part of the file, then the process "dies"
        real_save(obj, f, *args, **kwargs)
        if hasattr(f, "truncate"):
            f.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"), pytest.warns(UserWarning, match="schedule restarts"):
        train(config(tiny_fmnist, epochs=2), out, progress=False, log=quiet)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in checkpoint_paths(out / "checkpoints")] == ["epoch-001.pt"]  # no torn epoch-002.pt
    assert good.read_bytes() == before
    assert torch.load(good, weights_only=True)["epoch"] == 1
    assert not [p for p in (out / "checkpoints").iterdir() if p.name != "epoch-001.pt"]  # no temp file left
    assert json.loads((out / "result.json").read_text())["epochs"] == 1  # still the finished one-epoch run


def test_save_checkpoint_crash_mid_write_leaves_no_file(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, 1, {"epoch": 1, "model": {"w": torch.ones(3)}})
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, 2, {"epoch": 2, "model": {"w": torch.zeros(3)}})
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-001.pt"]
    assert torch.equal(torch.load(folder / "epoch-001.pt", weights_only=True)["model"]["w"], torch.ones(3))
