"""The small plain CNN (attention slots as in the ResNets) and the transform slot at the input (ST-CNN)."""

import pytest
import torch
from torch import nn

import visattn
from tests._build import randomize_
from visattn.backbones import PlainBlock, PlainCNN, attach, create
from visattn.backbones.resnet import stn_kwargs_for
from visattn.modules.stn import SpatialTransformer


def _reference_block(block: PlainBlock, x: torch.Tensor) -> torch.Tensor:
    """The block written out: conv-BN-ReLU, conv-BN, attention ("standard"), ReLU; no shortcut."""
    out = torch.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    if block.attn is not None:
        out = block.attn(out)
    return torch.relu(out)


def test_plain_block_has_no_shortcut_and_its_slot_after_the_last_bn():
    block = randomize_(PlainBlock(8, 16, 2)).eval()
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(block(x), _reference_block(block, x))
    block.set_attention(randomize_(visattn.create("se", 16, reduction=4)).eval())
    torch.testing.assert_close(block(x), _reference_block(block, x))
    with pytest.raises(ValueError, match="no identity"):
        PlainBlock(8, 8).set_attention(visattn.create("se", 8), "identity")


def test_plain_cnn_shapes_and_stages():
    m = create("plaincnn", in_chans=1, input_size=60)
    assert isinstance(m, PlainCNN) and m(torch.randn(2, 1, 60, 60)).shape == (2, 10)
    assert m.forward_features(torch.randn(1, 1, 60, 60)).shape == (1, 64, 8, 8)
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ValueError, match="zero_init_residual"):
        create("plaincnn", zero_init_residual=True)


@pytest.mark.parametrize("key", ["se", "cbam", "coord", "simam"])
def test_attention_goes_into_every_block_as_in_a_resnet(key):
    built = create("plaincnn", key, in_chans=1, input_size=60, blocks_per_stage=2)
    blocks = [b for b in built.modules() if isinstance(b, PlainBlock)]
    assert len(blocks) == 6
    assert all(b.attn is not None for b in blocks)
    attached = attach(create("plaincnn", in_chans=1, blocks_per_stage=2), key)
    assert sorted(built.state_dict()) == sorted(attached.state_dict())  # attach finds the same slots
    assert built(torch.randn(2, 1, 60, 60)).shape == (2, 10)


def test_stn_sized_for_the_input():
    assert stn_kwargs_for(60) == {"loc_channels": 20, "loc_pool": 3}
    assert stn_kwargs_for(28)["loc_pool"] == 1
    m = create("plaincnn", in_chans=1, input_size=60, transform="stn")
    assert isinstance(m.transform, SpatialTransformer)
    pools = [p for p in m.transform.localization if isinstance(p, nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [3, 3]
    custom = create("plaincnn", in_chans=1, input_size=60, transform="stn", transform_kwargs={"loc_pool": 1})
    assert not any(isinstance(p, nn.MaxPool2d) for p in custom.transform.localization)


@pytest.mark.parametrize("name, attention", [("plaincnn", None), ("plaincnn", "cbam"), ("resnet20", None),
                                             ("resnet20", "se")])
def test_st_cnn_starts_as_the_network_without_the_transform(name, attention):
    """Same weights, with and without the STN in front: the same outputs at initialisation."""
    torch.manual_seed(0)
    plain = randomize_(create(name, attention, in_chans=1, input_size=60)).eval()
    st = create(name, attention, in_chans=1, input_size=60, transform="stn").eval()
    missing, unexpected = st.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("transform.") for k in missing)
    x = torch.randn(3, 1, 60, 60)
    torch.testing.assert_close(st(x), plain(x), atol=1e-5, rtol=1e-4)
    # and the transform is in the graph: the loss reaches theta
    st.train()
    nn.functional.cross_entropy(st(x), torch.tensor([0, 1, 2])).backward()
    assert st.transform.fc_loc.bias.grad.abs().sum() > 0


def test_transform_must_be_a_transform():
    with pytest.raises(ValueError, match="transform-role"):
        create("plaincnn", transform="se")
    with pytest.raises(ValueError, match="already has a `transform`"):
        create("resnet20", "stn", transform="stn")
