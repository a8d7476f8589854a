import pytest
import torch

from visattn.data.image_files import ImageFiles, load_image_files, read_image
from visattn.data.transforms import image_transform, resize_size

Image = pytest.importorskip("PIL.Image")


def stripes(width=100, height=50):
    """Red | green | blue vertical bands of 15 | 70 | 15 percent of the width."""
    img = Image.new("RGB", (width, height), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, width * 15 // 100, height))
    img.paste((0, 0, 255), (width - width * 15 // 100, 0, width, height))
    return img


@pytest.mark.parametrize("use_timm", [True, False])
def test_eval_keeps_aspect_and_crops_the_centre(use_timm):
    if use_timm:
        pytest.importorskip("timm")
    t = image_transform(32, training=False, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0, use_timm=use_timm)
    x = t(stripes())
    assert x.shape == (3, 32, 32)
    # shorter side 50 -> 32, width 100 -> 64: the centre 32 columns are all green (a squash shows red, blue)
    torch.testing.assert_close(x[1], torch.ones(32, 32), atol=0.02, rtol=0)
    assert float(x[0].max()) < 0.02 and float(x[2].max()) < 0.02


def test_timm_and_torchvision_eval_agree():
    pytest.importorskip("timm")
    img = Image.effect_mandelbrot((90, 60), (-2, -1, 1, 1), 50).convert("RGB")
    a = image_transform(48, training=False, use_timm=True)(img)
    b = image_transform(48, training=False, use_timm=False)(img)
    assert a.shape == b.shape == (3, 48, 48)
    torch.testing.assert_close(a, b, atol=0.05, rtol=0)


@pytest.mark.parametrize("use_timm", [True, False])
def test_training_crops_at_random_and_flips(use_timm):
    if use_timm:
        pytest.importorskip("timm")
    t = image_transform(24, training=True, mean=(0, 0, 0), std=(1, 1, 1), use_timm=use_timm)
    torch.manual_seed(0)
    import random
    random.seed(0)
    outs = [t(stripes()) for _ in range(8)]
    assert all(o.shape == (3, 24, 24) for o in outs)
    assert len({tuple(o.mean((1, 2)).round(decimals=3).tolist()) for o in outs}) > 1  # different crops


def test_resize_size_follows_crop_pct():
    assert resize_size(224) == 256 and resize_size(32, 1.0) == 32


def test_bad_options():
    with pytest.raises(ValueError, match="img_size"):
        image_transform(0, training=False)
    with pytest.raises(ValueError, match="one value per channel"):
        image_transform(32, training=False, mean=(0.5,), std=(0.5, 0.5))


@pytest.fixture
def sorted_folder(tmp_path):
    """3 classes x 8 images of different sizes, listed class by class (as every folder is)."""
    for split, n in (("train", 8), ("val", 4)):
        for c, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            folder = tmp_path / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + 7 * i, 30 + 5 * c), colour).save(folder / f"{i:02d}.png")
    return tmp_path


def test_subset_of_a_class_sorted_folder_has_every_class(sorted_folder):
    train, val = load_image_files(sorted_folder, 32)
    sub = train.subset(6, seed=0)
    assert sorted(sub.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # "the first 6 files" would be class 0 only
    assert len(set(val.subset(3).labels.tolist())) == 3


def test_loader_decodes_in_workers_at_the_asked_size(sorted_folder):
    train, val = load_image_files(sorted_folder, 32)
    loader = train.loader(5, shuffle=True, augment=True, seed=1, drop_last=True, workers=2)
    assert len(loader) == 4
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 32, 32)] * 4
    assert sorted(torch.cat([y for _, y in batches]).tolist()) != list(range(20))
    x, y = next(iter(val.loader(12, workers=0)))
    assert x.shape == (12, 3, 32, 32) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # evaluation is deterministic: a red image normalised with ImageNet's statistics
    torch.testing.assert_close(x[0, 0], torch.full((32, 32), (1 - 0.485) / 0.229), atol=1e-4, rtol=0)


def test_loader_shards_and_order_are_seeded(sorted_folder):
    train, _ = load_image_files(sorted_folder, 16)
    a = [y.tolist() for _, y in train.loader(4, shuffle=True, seed=3, workers=0)]
    b = [y.tolist() for _, y in train.loader(4, shuffle=True, seed=3, workers=0)]
    assert a == b
    halves = [torch.cat([y for _, y in train.loader(4, rank=r, world_size=2, workers=0)]) for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == 12


def test_corrupt_image_is_one_line_naming_it(sorted_folder):
    bad = sorted_folder / "val" / "class1" / "01.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _, val = load_image_files(sorted_folder, 16)
    with pytest.raises(ValueError, match=r"01\.png: not a readable image") as err:
        list(val.loader(4, workers=1))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(bad)


def test_grey_images_and_preprocessing(sorted_folder):
    train, _ = load_image_files(sorted_folder, 20, channels=1)
    x, _ = next(iter(train.loader(2, workers=0)))
    assert x.shape == (2, 1, 20, 20)
    assert train.preprocessing["mean"] == [0.5] and train.image_shape == (1, 20, 20)


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected train"):
        load_image_files(tmp_path, 32)


def test_select_by_indices(sorted_folder):
    train, _ = load_image_files(sorted_folder, 32)
    part = train.select(torch.tensor([0, 23]))
    assert isinstance(part, ImageFiles) and part.labels.tolist() == [0, 2] and len(part.paths) == 2
