"""Segmentation training data: image and mask move together, each epoch draws new augmentations, and the
validation split is normalised with the training split's statistics."""

import torch

from visattn.data.seg_folders import read_generic
from visattn.data.segmentation import FolderLoader, SegBatchLoader, SegData, load_segmentation

SHADE = 20  # image grey level per class, so that the mask can be read back from the image


def _labelled_scenes(n=16, size=12) -> SegData:
    """Masks of random (left-right asymmetric) labels; each image is its mask times SHADE."""
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 5, (n, size, size), generator=g, dtype=torch.uint8)
    images = (masks * SHADE)[:, None]
    return SegData(images, masks, ["c0", "c1", "c2", "c3", "c4"], (0.3,), (0.2,))


def _labels_from_image(x: torch.Tensor, data: SegData) -> torch.Tensor:
    grey = (x * data.std[0] + data.mean[0]) * 255  # undo the normalisation
    return (grey / SHADE).round().long()[:, 0]


def test_in_memory_flips_move_image_and_mask_together():
    data = _labelled_scenes()
    loader = SegBatchLoader(data, 4, augment=True, flip=True, seed=3)
    flipped = kept = 0
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        for start, (x, y) in zip(range(0, len(data), 4), loader, strict=True):
            assert torch.equal(_labels_from_image(x, data), y)  # the mask still labels the image's pixels
            source = data.masks[start:start + 4].long()
            same, mirrored = (y == source).flatten(1).all(1), (y == source.flip(-1)).flatten(1).all(1)
            assert (same | mirrored).all()
            flipped, kept = flipped + int(mirrored.sum()), kept + int(same.sum())
    assert flipped > 0 and kept > 0  # both happened, so the check above saw flips


def test_in_memory_evaluation_batches_are_not_flipped():
    data = _labelled_scenes()
    x, y = next(iter(SegBatchLoader(data, 16)))
    assert torch.equal(y, data.masks.long()) and torch.equal(_labels_from_image(x, data), y)


def _masks_by_index(loader: FolderLoader, epoch: int) -> list[torch.Tensor]:
    loader.set_epoch(epoch)
    return [y[0] for _, y in loader]


def test_folder_augmentation_is_new_each_epoch_and_repeatable(generic_root):
    loader = FolderLoader(read_generic(generic_root, "train"), (0.5,) * 3, (0.25,) * 3, batch_size=1,
                          crop=(24, 24), shuffle=False, workers=0)
    epochs = [_masks_by_index(loader, e) for e in range(4)]
    for index in range(len(epochs[0])):
        seen = [epoch[index] for epoch in epochs]
        assert any(not torch.equal(seen[0], other) for other in seen[1:]), f"image {index}: same crop every epoch"
    # the same epoch gives the same crops again (a run resumes to the same batches)
    assert all(torch.equal(a, b) for a, b in zip(epochs[2], _masks_by_index(loader, 2), strict=True))
    # images of one epoch are augmented independently, not all with one crop
    assert any(not torch.equal(epochs[1][0], m) for m in epochs[1][1:])


def test_validation_scenes_use_the_training_statistics(split_fmnist):
    train, val = load_segmentation("fashion-scenes", split_fmnist, train_limit=24, val_limit=12, scene_size=32)
    own = val.images.float().div(255)
    assert abs(own.mean().item() - train.mean[0]) > 1e-3  # the two splits differ here, so the check below bites
    assert val.mean == train.mean and val.std == train.std
    x, _ = next(iter(SegBatchLoader(val, 12)))
    torch.testing.assert_close(x, (own - train.mean[0]) / train.std[0])
