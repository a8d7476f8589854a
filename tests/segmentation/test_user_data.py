"""Segmentation on user data: Cityscapes and ADE20K layouts, crops that fit, ignore index and class weights."""

import pytest
import torch
import torch.nn.functional as F

from tests.segmentation.conftest import save_png
from visattn.data.datasets import dataset_info
from visattn.data.seg_folders import IGNORE_INDEX, SegDataError
from visattn.data.segmentation import FolderLoader, load_segmentation, segmentation_meta
from visattn.segmentation.loss import segmentation_loss


def _masked_image(mask: torch.Tensor) -> torch.Tensor:
    """An RGB image whose red channel encodes the mask value (so the pairing is checkable)."""
    return torch.stack([mask.clamp(max=255), torch.full_like(mask, 7), torch.full_like(mask, 9)], -1)


def _cityscapes(root, sizes=((40, 56), (36, 50)), split_cities=(("train", "aachen"), ("val", "bonn"))):
    g = torch.Generator().manual_seed(0)
    written = {}
    for split, city in split_cities:
        for n, (h, w) in enumerate(sizes):
            stem = f"{city}_000000_{n:06d}"
            mask = torch.randint(0, 19, (h, w), generator=g)
            mask[0, :5] = 255
            save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _masked_image(mask), "RGB")
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", mask, "L")
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", mask + 7, "L")  # not read
            written[(split, stem)] = mask
    return written


def _ade20k(root, sizes=((33, 47), (40, 30))):
    g = torch.Generator().manual_seed(1)
    written = {}
    for split, folder, prefix in (("train", "training", "ADE_train"), ("val", "validation", "ADE_val")):
        for n, (h, w) in enumerate(sizes):
            stem = f"{prefix}_{n + 1:08d}"
            raw = torch.randint(0, 151, (h, w), generator=g)  # 0 = "other", k = class k - 1
            raw[0, :3] = 0
            save_png(root / "ADEChallengeData2016" / "images" / folder / f"{stem}.png", _masked_image(raw), "RGB")
            save_png(root / "ADEChallengeData2016" / "annotations" / folder / f"{stem}.png", raw, "L")
            written[(split, stem)] = raw
    return written


def test_cityscapes_layout_pairs_images_with_their_train_id_masks(tmp_path):
    written = _cityscapes(tmp_path)
    meta = segmentation_meta("cityscapes", tmp_path, crop_size=32)
    assert meta.num_classes == 19 and meta.in_chans == 3 and meta.classes[0] == "road"
    assert dataset_info("cityscapes").mean == (0.485, 0.456, 0.406)
    train, val = load_segmentation("cityscapes", tmp_path)
    assert len(train) == len(val) == 2
    for folder, split in ((train, "train"), (val, "val")):
        for i, (image_path, _) in enumerate(folder.pairs):
            image, mask = folder.read(i)
            expected = written[(split, image_path.name.removesuffix("_leftImg8bit.png"))]
            assert torch.equal(mask, expected)
            assert torch.equal(image[0].long(), expected)  # the image that belongs to this mask


def test_cityscapes_without_train_id_masks_says_how_to_make_them(tmp_path):
    _cityscapes(tmp_path)
    next((tmp_path / "gtFine" / "val").rglob("*_labelTrainIds.png")).unlink()
    with pytest.raises(SegDataError, match="labelTrainIds.png: no trainId mask .*createTrainIdLabelImgs"):
        load_segmentation("cityscapes", tmp_path)


def test_ade20k_layout_shifts_labels_so_zero_is_ignored(tmp_path):
    written = _ade20k(tmp_path)
    assert segmentation_meta("ade20k", tmp_path).num_classes == 150
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):  # the folder itself or its parent
        train, val = load_segmentation("ade20k", root)
        for folder, split in ((train, "train"), (val, "val")):
            for i, (image_path, _) in enumerate(folder.pairs):
                raw = written[(split, image_path.stem)]
                _, mask = folder.read(i)
                assert torch.equal(mask[raw == 0], torch.full_like(mask[raw == 0], IGNORE_INDEX))
                assert torch.equal(mask[raw > 0], raw[raw > 0] - 1)
                assert int(mask[mask != IGNORE_INDEX].max()) <= 149


def test_ade20k_label_beyond_its_classes_is_one_line(tmp_path):
    _ade20k(tmp_path)
    path = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    save_png(path, torch.full((33, 47), 152), "L")
    train, _ = load_segmentation("ade20k", tmp_path)
    with pytest.raises(SegDataError, match="ADE_train_00000001.png: label 151 is outside"):
        train.read(0)


def test_a_crop_larger_than_the_images_is_refused_in_one_line(tmp_path):
    _cityscapes(tmp_path)
    train, _ = load_segmentation("cityscapes", tmp_path)
    with pytest.raises(ValueError, match=r"crop 512x512 is larger .* aachen_000000_000001_leftImg8bit.png, is "
                                         r"36x50 .*--crop-size 36\)") as err:
        FolderLoader(train, (0.5,) * 3, (0.25,) * 3, crop=(512, 512), workers=0)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="larger than the training images"):
        FolderLoader(train, (0.5,) * 3, (0.25,) * 3, crop=(30, 51), workers=0)  # too wide for the 50-wide one
    loader = FolderLoader(train, (0.5,) * 3, (0.25,) * 3, crop=(36, 50), batch_size=2, workers=0)
    x, y = next(iter(loader))
    assert x.shape == (2, 3, 36, 50) and y.shape == (2, 36, 50)


def test_a_limited_folder_checks_the_crop_against_the_images_it_kept(tmp_path):
    _cityscapes(tmp_path, sizes=((40, 56), (20, 20), (44, 60)))
    full, _ = load_segmentation("cityscapes", tmp_path, subset_seed=None)
    with pytest.raises(ValueError, match="larger than the training images"):
        FolderLoader(full, (0.5,) * 3, (0.25,) * 3, crop=(32, 32), workers=0)
    kept, _ = load_segmentation("cityscapes", tmp_path, train_limit=1, subset_seed=None)  # the 40x56 one
    FolderLoader(kept, (0.5,) * 3, (0.25,) * 3, crop=(32, 32), workers=0)


def _hand_loss(logits, target, ignore, weight):
    """Weighted mean over counted pixels of -log softmax at the target, written out per pixel."""
    logp = F.log_softmax(logits.double(), 1)
    total = norm = 0.0
    b, _, h, w = logits.shape
    for n in range(b):
        for i in range(h):
            for j in range(w):
                t = int(target[n, i, j])
                if t in (ignore, IGNORE_INDEX):
                    continue
                total -= weight[t] * float(logp[n, t, i, j])
                norm += weight[t]
    return total / norm


def test_loss_leaves_out_the_ignore_index_and_weights_classes():
    g = torch.Generator().manual_seed(0)
    out = {"out": torch.randn(2, 4, 5, 6, generator=g), "aux": torch.randn(2, 4, 5, 6, generator=g)}
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    target[0, 0, :3] = IGNORE_INDEX
    weight = [0.5, 2.0, 1.0, 3.0]
    got = segmentation_loss(out, target, {"out": 1.0, "aux": 0.4}, ignore_index=1, class_weight=weight)
    expected = _hand_loss(out["out"], target, 1, weight) + 0.4 * _hand_loss(out["aux"], target, 1, weight)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    plain = segmentation_loss(out, target, {"out": 1.0})
    assert plain.item() == pytest.approx(_hand_loss(out["out"], target, IGNORE_INDEX, [1.0] * 4), rel=1e-5)


@pytest.mark.parametrize("weights, message", [([1.0, 2.0], "2 given for 4 classes"), ([1, -1, 1, 1], ">= 0"),
                                              ([0, 0, 0, 0], "all zero"), ([1, float("nan"), 1, 1], "finite")])
def test_bad_class_weights_are_one_line(weights, message):
    with pytest.raises(ValueError, match=message):
        segmentation_loss({"out": torch.zeros(1, 4, 2, 2)}, torch.zeros(1, 2, 2, dtype=torch.long), {"out": 1.0},
                          class_weight=weights)
