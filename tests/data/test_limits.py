"""--train-limit / --val-limit keep a seeded, class-stratified random subset on every data set."""

import pytest
import torch

from visattn.data.cluttered import ClutteredImages, ClutterSpec
from visattn.data.loader import ImageData, load_dataset

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def sorted_folder(tmp_path):
    """3 classes x 10 training images, each class one colour; listed class by class, as every folder is."""
    for split, n in (("train", 10), ("val", 4)):
        for c, colour in enumerate(((200, 0, 0), (0, 200, 0), (0, 0, 200))):
            folder = tmp_path / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 12), colour).save(folder / f"{i:02d}.png")
    return tmp_path


@pytest.mark.parametrize("budget", [2048, 0], ids=["in-memory", "streamed"])
def test_class_sorted_folder_limit_is_not_one_class(sorted_folder, budget):
    train, val = load_dataset("image-folder", sorted_folder, image_size=8, train_limit=6, val_limit=3,
                              memory_budget_mb=budget)
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(val.labels.tolist()) == [0, 1, 2]


def test_in_memory_and_streamed_pick_the_same_images(sorted_folder):
    mem, _ = load_dataset("image-folder", sorted_folder, image_size=8, train_limit=5)
    disk, _ = load_dataset("image-folder", sorted_folder, image_size=8, train_limit=5, memory_budget_mb=0)
    assert torch.equal(mem.labels, disk.labels)
    assert torch.equal(mem.images, disk.to_memory(workers=0).images)


def test_images_keep_their_labels(sorted_folder):
    train, _ = load_dataset("image-folder", sorted_folder, image_size=8, train_limit=6)
    colour_channel = train.images.float().mean((2, 3)).argmax(1)  # class k is pure colour k
    assert torch.equal(colour_channel, train.labels)


def test_seed_none_keeps_the_first_samples_of_recorded_runs(sorted_folder):
    train, _ = load_dataset("image-folder", sorted_folder, image_size=8, train_limit=4, subset_seed=None)
    assert train.labels.tolist() == [0, 0, 0, 0]


def test_cluttered_subset_stays_lazy_and_matches_the_full_set():
    source = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) // 10  # class-sorted
    images = ClutteredImages(source, ClutterSpec(canvas=36, clutter=2), "train")
    full = ImageData(images, labels, [str(i) for i in range(4)], (0.5,), (0.5,))
    sub = full.subset(8, seed=1)
    assert isinstance(sub.images, ClutteredImages)  # nothing rendered yet
    assert sorted(sub.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    picked = sub.images.indices
    assert torch.equal(sub.images[torch.arange(8)], full.images[picked])  # the same pictures as in the full set


def test_segmentation_folder_limit_is_random(tmp_path):
    from visattn.data.segmentation import load_segmentation

    (tmp_path / "classes.txt").write_text("background\nthing\n")
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (8, 8)).save(tmp_path / "images" / split / f"{i:02d}.png")
            Image.new("L", (8, 8), i % 2).save(tmp_path / "masks" / split / f"{i:02d}.png")
    train, _ = load_segmentation("seg-folder", tmp_path, train_limit=4)
    names = [p[0].name for p in train.pairs]
    assert len(names) == 4 and names != ["00.png", "01.png", "02.png", "03.png"]
    again, _ = load_segmentation("seg-folder", tmp_path, train_limit=4)
    assert [p[0].name for p in again.pairs] == names
