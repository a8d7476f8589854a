"""Cluttered Fashion-MNIST knows where each item is: item_centres agrees with the rendered images."""

import pytest
import torch

from visattn.data.cluttered import RTS, ClutteredImages, ClutterSpec, item_centres, render


def _lit(n=20):
    return torch.full((n, 28, 28), 255, dtype=torch.uint8)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("seed", [0, 3])
def test_centre_of_an_undistorted_item_is_its_square_centre(split, seed):
    src, idx = _lit(), torch.arange(20)
    spec = ClutterSpec(canvas=60, clutter=0, seed=seed)
    images = render(src, idx, spec, split)[:, 0]
    centres = item_centres(idx, spec, split)
    assert centres.shape == (20, 2) and centres.dtype == torch.float64
    for image, (cx, cy) in zip(images, centres.tolist(), strict=True):
        rows, cols = image.nonzero(as_tuple=True)
        assert (cols.min().item() + 14, rows.min().item() + 14) == (cx, cy)
        assert (cols.max().item() + 1 - 14, rows.max().item() + 1 - 14) == (cx, cy)


def test_centre_of_a_distorted_item_is_its_centre_of_mass():
    src, idx = _lit(), torch.arange(20)
    spec = ClutterSpec(canvas=60, clutter=0, **RTS)
    images = render(src, idx, spec, "train")[:, 0].double()
    centres = item_centres(idx, spec, "train")
    grid = torch.arange(60, dtype=torch.float64) + 0.5  # pixel centres
    mass = images.sum((1, 2))
    com = torch.stack([(images.sum(1) * grid).sum(1) / mass, (images.sum(2) * grid).sum(1) / mass], -1)
    torch.testing.assert_close(com, centres, atol=0.3, rtol=0)


def test_a_lazy_view_knows_its_own_items():
    src = _lit(30)
    spec = ClutterSpec(canvas=50)
    view = ClutteredImages(src, spec, "test")[5:15].select(torch.tensor([3, 0, 7]))
    torch.testing.assert_close(view.item_centres(), item_centres(torch.tensor([8, 5, 12]), spec, "test"))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        item_centres(torch.arange(2), spec, "val")
