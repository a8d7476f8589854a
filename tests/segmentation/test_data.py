"""Segmentation data: Fashion-MNIST scenes, VOC and generic folders, joint augmentation, bad-input errors."""

import pytest
import torch

from visattn.data.scenes import SceneConfig, class_balance, make_scenes, render_scenes
from visattn.data.seg_folders import SegDataError, read_generic, read_voc, voc_colormap
from visattn.data.segmentation import FolderLoader, joint_augment, load_segmentation

from .conftest import save_png


def _items(n=12):
    items = torch.zeros(n, 28, 28, dtype=torch.uint8)
    items[:, 4:24, 6:22] = 180
    return items, torch.arange(n) % 10


def test_scenes_are_a_function_of_split_index_and_seed():
    items, labels = _items()
    cfg = SceneConfig(size=40)
    x_all, y_all = render_scenes(items, labels, torch.arange(10), "train", cfg)
    x_two, y_two = render_scenes(items, labels, torch.tensor([7, 3]), "train", cfg)
    assert torch.equal(x_two[0], x_all[7]) and torch.equal(y_two[1], y_all[3])  # batch composition does not matter
    torch.manual_seed(123)  # nor the global random state
    assert torch.equal(render_scenes(items, labels, torch.arange(10), "train", cfg)[1], y_all)
    assert not torch.equal(render_scenes(items, labels, torch.arange(10), "test", cfg)[1], y_all)
    assert not torch.equal(render_scenes(items, labels, torch.arange(10), "train", SceneConfig(size=40, seed=1))[1],
                           y_all)


def test_scene_labels_follow_the_visible_item():
    items, labels = _items()
    x, y = render_scenes(items, labels, torch.arange(64), "train", SceneConfig(size=48))
    assert x.shape == (64, 1, 48, 48) and y.shape == (64, 48, 48)
    assert (x[:, 0][y == 0] == 0).all()  # background: nothing drawn
    assert (x[:, 0][y > 0] > 0).all()  # labelled: an item is drawn there
    counts = [len(torch.unique(s)) - 1 for s in y]  # visible classes per scene
    assert max(counts) >= 3 and min(counts) >= 1
    # occlusion: some scenes show fewer whole items than they hold, and every class appears
    assert set(torch.unique(y).tolist()) == set(range(11))
    assert abs(sum(class_balance(y)) - 1) < 1e-9


def test_train_scenes_use_train_items_only(split_fmnist):
    _, y_train = make_scenes("train", 30, SceneConfig(size=32), split_fmnist)
    _, y_test = make_scenes("test", 30, SceneConfig(size=32), split_fmnist)
    assert set(torch.unique(y_train).tolist()) <= {0, 1, 2, 3, 4, 5}  # classes 0-4, shifted by the background
    assert set(torch.unique(y_test).tolist()) <= {0, 6, 7, 8, 9, 10}
    assert torch.equal(make_scenes("train", 30, SceneConfig(size=32), split_fmnist, batch=7)[1], y_train)


def test_joint_augmentation_keeps_image_and_mask_aligned():
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 4, (9, 11)).repeat_interleave(4, 0).repeat_interleave(4, 1)  # 36 x 44, 4-px cells
    colour = torch.tensor([0.0, 1.0, 2.0, 3.0])
    image = torch.stack([colour[mask], -colour[mask]])  # the image encodes the class
    rates = []
    for _ in range(30):
        x, m = joint_augment(image, mask, (24, 30), g, scale=(0.5, 2.0))
        assert x.shape == (2, 24, 30) and m.shape == (24, 30)
        valid = m != 255
        # bilinear blurs cell edges (2 px wide at scale 0.5): most labelled pixels still show their class's colour
        agree = ((x[0] - colour[m.clamp(max=3)]).abs() < 0.5) & valid
        rates.append(agree.sum().item() / valid.sum().item())
        assert (x[:, ~valid] == 0).all()  # padding: zeros in the image, ignore in the mask
    # measured: aligned min 0.85, mean 0.90; the mask one pixel off: min 0.53, mean 0.72
    assert min(rates) > 0.8 and sum(rates) / len(rates) > 0.85
    # without scaling, crop and flip are exact
    for _ in range(10):
        x, m = joint_augment(image, mask, (20, 20), g, scale=(1.0, 1.0))
        assert torch.equal(x[0], colour[m])


def test_voc_reader(voc_root):
    train = read_voc(voc_root, "train")
    assert len(train) == 4 and train.num_classes == 21
    image, mask = train.read(1)
    assert image.shape == (3, 40, 43) and mask.shape == (40, 43) and mask.dtype == torch.int64
    assert mask[0, 0] == 255 and set(mask.unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    # an RGB mask in VOC's colour map reads the same
    rgb = voc_colormap()[mask]
    save_png(voc_root / "SegmentationClass" / "2007_000001.png", rgb, "RGB")
    assert torch.equal(read_voc(voc_root, "train").read(1)[1], mask)


def test_generic_reader_streams_with_workers(generic_root):
    train = read_generic(generic_root, "train")
    assert train.classes == ["background", "red", "green", "blue"]
    loader = FolderLoader(train, (0.5,) * 3, (0.25,) * 3, batch_size=2, crop=(24, 24), shuffle=True, workers=2)
    loader.set_epoch(1)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    assert batches[0][0].shape == (2, 3, 24, 24) and batches[0][1].shape == (2, 24, 24)
    again = list(FolderLoader(read_generic(generic_root, "train"), (0.5,) * 3, (0.25,) * 3, batch_size=2,
                              crop=(24, 24), shuffle=True, workers=0))
    assert not torch.equal(again[0][1], batches[0][1])  # epoch 0 differs from epoch 1
    loader0 = FolderLoader(read_generic(generic_root, "train"), (0.5,) * 3, (0.25,) * 3, batch_size=2,
                           crop=(24, 24), shuffle=True, workers=2)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(loader0, again, strict=True))  # workers change nothing
    val = FolderLoader(read_generic(generic_root, "val"), (0.5,) * 3, (0.25,) * 3, workers=0)
    sizes = [tuple(x.shape[-2:]) for x, _ in val]
    assert sizes == [(30, 41), (31, 41)]  # whole images


def test_scene_loading(split_fmnist):
    train, val = load_segmentation("fashion-scenes", split_fmnist, train_limit=20, val_limit=8, scene_size=32)
    assert train.images.shape == (20, 1, 32, 32) and len(val) == 8 and train.classes[0] == "background"


# ----------------------------------------------------------------------------------------------- bad input

def _first(folder):
    return folder.read(0)


def test_label_outside_range(generic_root):
    bad = torch.zeros(30, 41, dtype=torch.int64)
    bad[3, 3] = 7
    save_png(generic_root / "masks" / "train" / "im0.png", bad, "L")
    with pytest.raises(SegDataError, match=r"im0\.png: label 7 is outside \[0, 4\)"):
        _first(read_generic(generic_root, "train"))


def test_label_error_from_a_worker_is_one_line(generic_root):
    bad = torch.full((30, 41), 9, dtype=torch.int64)
    save_png(generic_root / "masks" / "train" / "im0.png", bad, "L")
    loader = FolderLoader(read_generic(generic_root, "train"), (0.5,) * 3, (0.25,) * 3, batch_size=5, crop=(8, 8),
                          workers=1)
    with pytest.raises(SegDataError) as err:
        list(loader)
    assert "\n" not in str(err.value) and "im0.png: label 9" in str(err.value)


def test_size_mismatch(generic_root):
    save_png(generic_root / "masks" / "train" / "im2.png", torch.zeros(20, 20), "L")
    with pytest.raises(SegDataError, match=r"im2\.png: mask size 20x20 differs from its image im2\.png \(41x32\)"):
        read_generic(generic_root, "train")


def test_unknown_palette_colour(voc_root):
    pal = voc_colormap().clone()
    pal[2] = torch.tensor([1, 2, 3])
    mask = torch.full((37, 45), 2)
    save_png(voc_root / "SegmentationClass" / "2007_000000.png", mask, "P", pal)
    with pytest.raises(SegDataError, match=r"2007_000000\.png: palette colour \(1, 2, 3\) of index 2"):
        _first(read_voc(voc_root, "train"))
    save_png(voc_root / "SegmentationClass" / "2007_000000.png", torch.full((37, 45, 3), 7), "RGB")
    with pytest.raises(SegDataError, match=r"2007_000000\.png: colour \(7, 7, 7\) is not in the colour map"):
        _first(read_voc(voc_root, "train"))


def test_empty_split_file(voc_root):
    (voc_root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(SegDataError, match=r"val\.txt: split file is empty"):
        read_voc(voc_root, "val")


def test_missing_mask(voc_root, generic_root):
    (voc_root / "SegmentationClass" / "2007_000002.png").unlink()
    with pytest.raises(SegDataError, match=r"2007_000002\.png: no mask for image 2007_000002\.jpg"):
        read_voc(voc_root, "train")
    (generic_root / "masks" / "val" / "im1.png").unlink()
    with pytest.raises(SegDataError, match=r"im1\.png: no mask for image im1\.png"):
        read_generic(generic_root, "val")
