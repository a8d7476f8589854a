"""Cluttered Fashion-MNIST: deterministic, the item whole and inside, labels kept, each split from its own images."""

import gzip
import math

import pytest
import torch

from tests.data.test_fashion_mnist import idx_bytes
from visattn.cli import main
from visattn.data import fashion_mnist as fm
from visattn.data.cluttered import (
    ITEM,
    ClutteredImages,
    ClutterSpec,
    _place_warped,
    item_geometry,
    item_size_bound,
    render,
    uniforms,
)
from visattn.data.loader import BatchLoader, load_dataset


def _source(n=12, seed=0):
    """Images lit everywhere (1..255), so an item's whole 28 x 28 square is visible on the canvas."""
    return torch.randint(1, 256, (n, ITEM, ITEM), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _find(canvas: torch.Tensor, item: torch.Tensor) -> list[tuple[int, int]]:
    """Every top-left offset where ``item`` appears exactly in ``canvas`` (slow, obvious search)."""
    c = canvas.shape[-1]
    return [(y, x) for y in range(c - ITEM + 1) for x in range(c - ITEM + 1)
            if torch.equal(canvas[y:y + ITEM, x:x + ITEM], item)]


def test_deterministic_per_seed_and_independent_of_the_batch():
    src, spec = _source(), ClutterSpec(canvas=40, clutter=3, clutter_size=6, seed=5)
    idx = torch.tensor([7, 0, 3, 11, 5])
    batch = render(src, idx, spec, "train")
    assert batch.shape == (5, 1, 40, 40) and batch.dtype == torch.uint8
    assert torch.equal(batch, render(src, idx, spec, "train"))
    assert torch.equal(render(src, idx[[3]], spec, "train")[0], batch[3])  # one image, alone or in a batch
    assert torch.equal(render(src, idx.flip(0), spec, "train"), batch.flip(0))
    other_seed = render(src, idx, ClutterSpec(canvas=40, clutter=3, clutter_size=6, seed=6), "train")
    other_split = render(src, idx, spec, "test")
    assert not torch.equal(batch, other_seed) and not torch.equal(batch, other_split)


def test_uniforms_look_uniform():
    u = uniforms(0, "train", torch.arange(20000), 3)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003
    assert abs(torch.corrcoef(u.T)[0, 1].item()) < 0.03  # streams are not copies of each other


def test_item_pasted_whole_at_a_random_place_inside_the_canvas():
    src = _source(40)
    out = render(src, torch.arange(40), ClutterSpec(canvas=44, clutter=0), "train")[:, 0]
    places = set()
    for i in range(40):
        found = _find(out[i], src[i])
        assert len(found) == 1, f"image {i}: the item is not on the canvas whole"
        (y, x), = found
        assert out[i].count_nonzero() == ITEM * ITEM  # nothing else is lit
        places.add((y, x))
    assert len(places) > 30  # positions vary


@pytest.mark.parametrize("rotation, scale", [((-45, 45), (0.7, 1.2)), ((0, 90), (1.2, 1.2)), ((-10, 10), (1, 1))])
def test_distorted_item_never_crosses_the_canvas_edge(rotation, scale):
    """Render each item on a canvas with a wide margin around it: nothing may land in the margin."""
    spec = ClutterSpec(canvas=math.ceil(item_size_bound(rotation, scale)), clutter=0, rotation=rotation,
                       scale=scale)
    n, pad = 300, 12
    items = torch.full((n, ITEM, ITEM), 255, dtype=torch.uint8)  # lit to the edge: the worst case
    angle, s, cx, cy = item_geometry(uniforms(0, "train", torch.arange(n), 16), spec)
    big = _place_warped(items, angle, s, cx + pad, cy + pad, spec.canvas + 2 * pad)
    inside = big[:, pad:-pad, pad:-pad]
    assert big.sum() == inside.sum(), "a distorted item reaches beyond the canvas"
    small = _place_warped(items, angle, s, cx, cy, spec.canvas)  # the same drawing, up to float32 rounding
    assert (inside.int() - small.int()).abs().max() <= 1
    area = inside.float().sum((1, 2)) / 255
    torch.testing.assert_close(area, (ITEM * s.float()) ** 2, rtol=0.06, atol=0)  # the whole item is drawn


def test_rts_rotates_and_scales():
    src = _source(8)
    out = render(src, torch.arange(8), ClutterSpec(canvas=60, clutter=0, **{"rotation": (-45, 45),
                                                                          "scale": (0.7, 1.2)}), "train")[:, 0]
    assert all(not _find(out[i], src[i]) for i in range(8))  # no longer a plain copy
    lit = out.count_nonzero((1, 2)).float() / ITEM ** 2
    assert lit.min() > 0.4 and lit.max() < 1.6 and lit.std() > 0.05  # areas of scales 0.7..1.2 squared


def test_clutter_only_adds_and_labels_stay(tmp_path, monkeypatch):
    folder = _write_split_marked_set(tmp_path, monkeypatch)
    clean_tr, clean_te = load_dataset("cluttered-fashion-mnist", folder, dataset_kwargs={"clutter": 0,
                                                                                         "canvas": 40})
    tr, te = load_dataset("cluttered-fashion-mnist", folder, dataset_kwargs={"clutter": 6, "canvas": 40})
    plain_tr, plain_te = load_dataset("fashion-mnist", folder)
    for clean, cluttered, plain in ((clean_tr, tr, plain_tr), (clean_te, te, plain_te)):
        assert torch.equal(cluttered.labels, plain.labels) and cluttered.classes == plain.classes
        idx = torch.arange(len(cluttered))
        a, b = clean.images[idx], cluttered.images[idx]
        assert (b >= a).all() and (b > a).any()  # clutter is drawn under the item (brighter pixel wins)
        lit = a > 0
        assert torch.equal(b[lit], a[lit])  # and never changes the item's own pixels here (item lit at max)


def test_clutter_never_darkens_the_item():
    src, idx = _source(30), torch.arange(30)
    clean = render(src, idx, ClutterSpec(canvas=36, clutter=0), "test")
    cluttered = render(src, idx, ClutterSpec(canvas=36, clutter=10, clutter_size=12), "test")
    assert (cluttered >= clean).all() and (cluttered > clean).any()


def _write_split_marked_set(tmp_path, monkeypatch):
    """Train images hold only 0 and 100 (items lit at 100), test images only 0 and 201: a pixel tells its split."""
    folder = tmp_path / "marked"
    folder.mkdir()
    g = torch.Generator().manual_seed(1)
    for prefix, n, value in (("train", 48, 100), ("t10k", 20, 201)):
        images = (torch.rand(n, ITEM, ITEM, generator=g) < 0.6).to(torch.uint8) * value
        labels = torch.arange(n, dtype=torch.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder


def test_train_and_test_are_made_from_their_own_split(tmp_path, monkeypatch):
    folder = _write_split_marked_set(tmp_path, monkeypatch)
    tr, te = load_dataset("cluttered-fashion-mnist", folder, dataset_kwargs={"clutter": 8, "clutter_size": 10})
    src_tr, src_te = fm.load_fashion_mnist("train", folder)[0], fm.load_fashion_mnist("test", folder)[0]
    x_tr, x_te = tr.images[torch.arange(len(tr))], te.images[torch.arange(len(te))]
    assert set(x_tr.unique().tolist()) == {0, 100} and set(x_te.unique().tolist()) == {0, 201}
    clean = load_dataset("cluttered-fashion-mnist", folder, dataset_kwargs={"clutter": 0})
    for split, src in zip(clean, (src_tr, src_te), strict=True):
        for i in (0, 3, len(split) - 1):
            assert _find(split.images[[i]][0, 0], src[i]), f"item {i} is not source image {i} of its split"


def test_lazy_views_and_the_batch_loader(tmp_path, monkeypatch):
    folder = _write_split_marked_set(tmp_path, monkeypatch)
    tr, te = load_dataset("cluttered-fashion-mnist", folder, train_limit=40, val_limit=10)
    assert isinstance(tr.images, ClutteredImages) and tr.images.shape == (40, 1, 60, 60) and len(te) == 10
    assert tr.in_chans == 1 and 0 < tr.mean[0] < 1
    every = tr.images[torch.arange(40)]
    assert torch.equal(tr.images[10:20][torch.arange(3)], every[10:13])  # a slice is a view of the same images
    assert torch.equal(tr.images.materialize(chunk=7), every)
    x, y = next(iter(BatchLoader(tr, 16, shuffle=True, augment=True, pad=0, seed=1)))
    assert x.shape == (16, 1, 60, 60) and x.dtype == torch.float32 and y.shape == (16,)


@pytest.mark.parametrize("options, message", [
    ({"canvas": 40, "rts": True}, "canvas 40 is smaller than the item"),
    ({"canvas": 27}, "canvas 27 is smaller than the item"),
    ({"clutter": -1}, "clutter (pieces per image) must be >= 0"),
    ({"clutter_size": 30}, "clutter_size must be in 1..28"),
    ({"rotation": (30, -30)}, "rotation range (30, -30) is out of order"),
    ({"scale": (1.2, 0.7)}, "scale range (1.2, 0.7) is out of order"),
    ({"zoom": 2}, "unknown option"),
])
def test_bad_options_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match="cluttered-fashion-mnist") as err:
        ClutterSpec.from_options(options)
    assert message in str(err.value)


def test_smallest_canvas_is_accepted():
    assert ClutterSpec(canvas=28).canvas == 28  # the plain item fits exactly
    need = math.ceil(item_size_bound((-45, 45), (0.7, 1.2)))
    assert need == math.ceil(29 * 1.2 * math.sqrt(2))
    ClutterSpec(canvas=need, **{"rotation": (-45, 45), "scale": (0.7, 1.2)})


@pytest.mark.parametrize("argv, message", [
    (["--canvas", "20"], "canvas 20 is smaller than the item"),
    (["--clutter", "-2"], "must be >= 0"),
    (["--rotation", "10,-10"], "out of order"),
    (["--rotation", "-10,-20"], "out of order"),  # a leading minus is a value, not an option
    (["--scale", "1.2,0.7"], "out of order"),
    (["--rts", "--canvas", "44"], "smaller than the item"),
])
def test_cli_bad_clutter_options_exit_2_with_one_line(argv, message, tmp_path, capsys):
    code = main(["train", "--dataset", "cluttered-fashion-mnist", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_clutter_options_need_the_cluttered_dataset(tmp_path, capsys):
    assert main(["train", "--dataset", "fashion-mnist", "--canvas", "40", "--out", str(tmp_path / "r")]) == 2
    assert "takes no options" in capsys.readouterr().err
