"""ImageFolder data streamed from disk gives the batches the in-memory loader gives, and trains."""

import json

import pytest
import torch

from visattn.data.loader import BatchLoader, ImageData, load_dataset, make_loader, shard
from visattn.data.streaming import StreamedImageData, StreamingLoader

Image = pytest.importorskip("PIL.Image")


def write_folder(root, n_per_class=(5, 4, 6), n_val=2, seed=0):
    """Random RGB images of varied sizes in train/<class>/ and val/<class>/ (PNG: decoded exactly)."""
    gen = torch.Generator().manual_seed(seed)
    for split, counts in (("train", n_per_class), ("val", (n_val,) * len(n_per_class))):
        for c, n in enumerate(counts):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in torch.randint(6, 20, (2,), generator=gen))
                pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


def test_budget_picks_the_path_and_statistics_agree(folder):
    mem_train, mem_val = load_dataset("image-folder", folder, image_size=8)
    disk_train, disk_val = load_dataset("image-folder", folder, image_size=8, memory_budget_mb=0)
    assert isinstance(mem_train, ImageData) and isinstance(disk_train, StreamedImageData)
    assert isinstance(disk_val, StreamedImageData) and len(disk_val) == len(mem_val) == 6
    assert disk_train.classes == mem_train.classes and torch.equal(disk_train.labels, mem_train.labels)
    assert disk_train.image_shape == mem_train.image_shape == (3, 8, 8)
    assert torch.allclose(torch.tensor(disk_train.mean), torch.tensor(mem_train.mean), atol=1e-6)
    assert torch.allclose(torch.tensor(disk_train.std), torch.tensor(mem_train.std), atol=1e-6)
    assert disk_val.mean == disk_train.mean  # validation is normalised with the training statistics
    limited, _ = load_dataset("image-folder", folder, image_size=8, memory_budget_mb=0, train_limit=4)
    assert len(limited) == 4 and limited.mean == disk_train.mean  # statistics before the limit, as in memory


def test_same_images_for_the_same_indices(folder):
    mem, _ = load_dataset("image-folder", folder, image_size=8)
    disk, _ = load_dataset("image-folder", folder, image_size=8, memory_budget_mb=0)
    disk.mean, disk.std = mem.mean, mem.std
    for i in range(len(mem)):  # decoding one file = the in-memory tensor of the same index
        assert torch.equal(disk.decode(i), mem.images[i])
    a = list(BatchLoader(mem, 4))
    b = list(StreamingLoader(disk, 4, workers=1))
    assert len(a) == len(b) == 4
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("world_size", [1, 2])
def test_same_batches_with_shuffle_augmentation_and_shards(folder, world_size):
    mem, _ = load_dataset("image-folder", folder, image_size=8)
    disk, _ = load_dataset("image-folder", folder, image_size=8, memory_budget_mb=0)
    disk.mean, disk.std = mem.mean, mem.std
    for rank in range(world_size):
        options = dict(shuffle=True, augment=True, pad=2, flip=True, seed=3, rank=rank, world_size=world_size,
                       drop_last=True)
        a, b = BatchLoader(mem, 3, **options), make_loader(disk, 3, workers=0, **options)
        assert isinstance(b, StreamingLoader) and len(a) == len(b)
        for epoch in (1, 2):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            batches_a, batches_b = list(a), list(b)
            assert len(batches_a) == len(batches_b) == len(a)
            for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if world_size == 2:  # evaluation's split: disjoint, and together everything
        parts = [shard(disk, r, 2) for r in range(2)]
        assert sorted(p for part in parts for p in part.paths) == sorted(disk.paths)


def test_training_through_the_streaming_path(folder, tmp_path, monkeypatch):
    from visattn.data import streaming
    from visattn.train import TrainConfig, train

    batches = []
    original = streaming.StreamingLoader.__iter__

    def counting(self):
        for item in original(self):
            batches.append(len(item[1]))
            yield item

    monkeypatch.setattr(streaming.StreamingLoader, "__iter__", counting)
    config = TrainConfig(dataset="image-folder", data_dir=str(folder), image_size=8, epochs=1, batch_size=4,
                         memory_budget_mb=0, attention="se", device="cpu")
    messages = []
    result = train(config, tmp_path / "run", progress=False, log=messages.append)
    assert any("(streamed from disk)" in m for m in messages)
    assert result["epochs"] == 1 and 0 <= result["accuracy"] <= 100
    assert sum(batches) == 12 + 6  # one epoch (15 images, drop_last: 3 batches of 4) + the 6 validation images
    assert json.loads((tmp_path / "run" / "config.json").read_text())["memory_budget_mb"] == 0
