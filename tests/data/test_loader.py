import pickle

import pytest
import torch

from visattn.data.cifar import load_cifar
from visattn.data.image_folder import load_image_folder
from visattn.data.loader import BatchLoader, ImageData, augment_batch, load_dataset


def crop_flip_reference(images, pad, dy, dx, flips):
    out = []
    p = torch.nn.functional.pad(images, (pad,) * 4)
    h, w = images.shape[-2:]
    for i in range(len(images)):
        crop = p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out.append(crop.flip(2) if flips[i] else crop)
    return torch.stack(out)


def test_augment_matches_per_image_loop():
    x = torch.randint(0, 256, (9, 3, 7, 5), dtype=torch.uint8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = augment_batch(x, 2, True, g1)
    dy = torch.randint(0, 5, (9,), generator=g2)
    dx = torch.randint(0, 5, (9,), generator=g2)
    flips = torch.rand(9, generator=g2) < 0.5
    assert torch.equal(out, crop_flip_reference(x, 2, dy, dx, flips))


def _data(n=10, c=1):
    return ImageData(torch.randint(0, 256, (n, c, 6, 6), dtype=torch.uint8), torch.arange(n) % 3, ["a", "b", "c"],
                     (0.5,) * c, (0.25,) * c)


def test_batches_normalised_and_complete():
    data = _data()
    batches = list(BatchLoader(data, 4))
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(BatchLoader(data, 4)) == 3
    x, _ = batches[0]
    torch.testing.assert_close(x, (data.images[:4].float() / 255 - 0.5) / 0.25)
    assert len(list(BatchLoader(data, 4, drop_last=True))) == 2 == len(BatchLoader(data, 4, drop_last=True))


def test_shards_cover_the_epoch_like_distributed_sampler():
    data = _data(11)
    seen = []
    for rank in range(3):
        loader = BatchLoader(data, 2, shuffle=True, seed=5, rank=rank, world_size=3)
        loader.set_epoch(1)
        seen += torch.cat([y for _, y in loader]).tolist()
    assert len(seen) == 12  # ceil(11 / 3) * 3, padded by wrapping around
    a = [y for _, y in BatchLoader(data, 2, shuffle=True, seed=5)]
    loader = BatchLoader(data, 2, shuffle=True, seed=5)
    loader.set_epoch(1)
    b = [y for _, y in loader]
    assert not all(torch.equal(u, v) for u, v in zip(a, b, strict=True))  # a new order each epoch


def test_cifar_folder(tmp_path):
    np = pytest.importorskip("numpy")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"cat", b"dog", b"ship"]}))
    x, y, classes = load_cifar("cifar10", tmp_path, "train")
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8 and classes == ["cat", "dog", "ship"]
    raw = pickle.loads((folder / "data_batch_1").read_bytes())[b"data"]
    assert torch.equal(x[0], torch.as_tensor(raw[0]).view(3, 32, 32))
    assert load_cifar("cifar10", folder, "test")[0].shape == (3, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar("cifar100", tmp_path)
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable CIFAR batch"):
        load_cifar("cifar10", folder, "test")


def test_image_folder(tmp_path):
    image = pytest.importorskip("PIL.Image")
    for split in ("train", "val"):
        for cls, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (tmp_path / split / cls).mkdir(parents=True)
            image.new("RGB", (10, 7), color).save(tmp_path / split / cls / "a.png")
    x, y, classes = load_image_folder(tmp_path / "train", size=8)
    assert x.shape == (2, 3, 8, 8) and classes == ["blue", "red"] and y.tolist() == [0, 1]
    assert x[0, 2].float().mean() == 255 and x[1, 0].float().mean() == 255
    train, val = load_dataset("image-folder", tmp_path, image_size=8)
    assert len(train) == len(val) == 2 and train.in_chans == 3


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist-ish")
