"""Cluttered Fashion-MNIST: every clutter piece is cut from another image than the item's own."""

import pytest
import torch

from visattn.data.cluttered import ClutterSpec, render


def _constant_images(n: int) -> torch.Tensor:
    """Image i is one grey level, 20 * (i + 1): a pixel's value names the image it came from."""
    return (torch.arange(1, n + 1, dtype=torch.uint8) * 20)[:, None, None].expand(n, 28, 28).contiguous()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("split", ["train", "test"])
def test_clutter_pieces_come_from_other_images(seed, split):
    n = 4  # few images: a piece drawn from all n (own included) would hit the item's own image often
    source, indices = _constant_images(n), torch.arange(n)
    clean = render(source, indices, ClutterSpec(canvas=60, clutter=0, seed=seed), split)[:, 0]
    cluttered = render(source, indices, ClutterSpec(canvas=60, clutter=10, clutter_size=5, seed=seed), split)[:, 0]
    for i in range(n):
        outside = clean[i] == 0  # the canvas beyond the item's square
        values = set(cluttered[i][outside].unique().tolist()) - {0}
        assert values, f"image {i}: no clutter drawn"
        assert 20 * (i + 1) not in values, f"image {i}: a clutter piece is cut from the item's own image"
        assert values <= {20 * (k + 1) for k in range(n)}


def test_pieces_are_drawn_from_every_other_image():
    n = 3
    source, indices = _constant_images(n), torch.arange(n)
    cluttered = render(source, indices, ClutterSpec(canvas=80, clutter=30, clutter_size=3), "train")[:, 0]
    clean = render(source, indices, ClutterSpec(canvas=80, clutter=0), "train")[:, 0]
    for i in range(n):
        values = set(cluttered[i][clean[i] == 0].unique().tolist()) - {0}
        assert values == {20 * (k + 1) for k in range(n) if k != i}
