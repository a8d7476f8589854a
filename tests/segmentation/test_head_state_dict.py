"""The decode heads' state_dict keys, their order and shapes, as the checkpoints visattn has written hold them.

head_state_dict_keys.json was written by the heads before they moved to one file each on a base class
(``create_head(name, 64, 32, 5, feature_size=(9, 7))``, DANet without branch classifiers, the auxiliary FCN
head). A committed checkpoint loads only while every key and shape stays; the order is the order of
``parameters()``, which an optimizer's saved state follows and seeded initialisation draws in.
"""

import json
from pathlib import Path

import pytest

from visattn.segmentation import HEADS, create_head
from visattn.segmentation.heads import FCNHead

RECORDED = json.loads((Path(__file__).parent / "head_state_dict_keys.json").read_text())


def _build(name: str):
    if name == "danet:branch_loss_weight=0":
        return create_head("danet", 64, 32, 5, branch_loss_weight=0)
    if name == "fcn:num_convs=1,concat_input=False":
        return FCNHead(64, 16, 5, num_convs=1, concat_input=False)
    return create_head(name, 64, 32, 5, feature_size=(9, 7))


def test_every_head_is_recorded():
    assert set(HEADS) <= set(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_state_dict_keys_and_shapes_unchanged(name):
    got = [[k, list(v.shape)] for k, v in _build(name).state_dict().items()]
    assert got == RECORDED[name]


def test_recorded_state_dict_loads_strictly():
    import torch

    for name in RECORDED:
        model = _build(name)
        recorded = {k: torch.zeros(shape) for k, shape in RECORDED[name]}
        model.load_state_dict(recorded, strict=True)  # raises on a missing / unexpected key or a bad shape
