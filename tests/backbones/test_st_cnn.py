"""The STN paper's ST-CNN options on visattn's nets: a smaller sampled grid, the paper's localisation net, and a
classifier without global pooling, each built for the size it sees."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests._build import randomize_
from visattn.backbones import create


def test_network_after_a_downsampling_transformer_is_built_for_its_output():
    torch.manual_seed(0)
    plain30 = randomize_(create("plaincnn", in_chans=1, input_size=30, global_pool=False)).eval()
    st = create("plaincnn", in_chans=1, input_size=60, transform="stn", transform_kwargs={"output_size": (30, 30)},
                global_pool=False).eval()
    assert st.fc.in_features == 64 * 4 * 4 == plain30.fc.in_features  # 30 -> 15 -> 8 -> 4
    missing, unexpected = st.load_state_dict(plain30.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("transform.") for k in missing)
    x = torch.randn(3, 1, 60, 60)
    # at initialisation the transformer is a bilinear resize to its output size
    resized = F.interpolate(x, size=(30, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(st(x), plain30(resized), atol=1e-5, rtol=1e-4)


def test_size_bound_attention_after_the_transformer_gets_the_output_size():
    m = create("plaincnn", "rga_s", in_chans=1, input_size=60, transform="stn",
               transform_kwargs={"output_size": 32})
    assert m(torch.randn(2, 1, 60, 60)).shape == (2, 10)


def test_paper_localisation_net_is_built_for_the_input_size():
    m = create("plaincnn", in_chans=1, input_size=60, transform="stn",
               transform_kwargs={"loc_net": "paper", "output_size": 30})
    assert m.transform.loc_net == "paper" and m.transform.input_size == (60, 60)
    assert [p.kernel_size for p in m.transform.localization if isinstance(p, nn.MaxPool2d)] == [2, 2]
    assert m(torch.randn(2, 1, 60, 60)).shape == (2, 10)
    default = create("plaincnn", in_chans=1, input_size=60, transform="stn")  # the conv net keeps its sizing
    assert default.transform.loc_net == "conv"
    assert [p.kernel_size for p in default.transform.localization if isinstance(p, nn.MaxPool2d)] == [3, 3]


@pytest.mark.parametrize(("size", "final"), [(60, (8, 8)), (30, (4, 4)), ((20, 28), (3, 4))])
def test_classifier_without_global_pooling_reads_the_whole_map(size, final):
    m = create("plaincnn", in_chans=1, input_size=size, global_pool=False)
    assert m.fc.in_features == 64 * final[0] * final[1] and m.num_features == m.fc.in_features
    h, w = (size, size) if isinstance(size, int) else size
    assert m(torch.randn(2, 1, h, w)).shape == (2, 10)
    # where a feature is matters to it (a globally pooled classifier would not see a shift)
    x = torch.zeros(1, 1, h, w)
    x[..., 2:8, 2:8] = 1
    m.eval()
    assert not torch.allclose(m(x), m(x.roll((h // 2, w // 2), dims=(-2, -1))))


def test_classifier_without_global_pooling_refuses_another_size():
    m = create("plaincnn", in_chans=1, input_size=30, global_pool=False)
    with pytest.raises(ValueError, match="PlainCNN: built without global pooling for a 4x4 last map .* got 8x8"):
        m(torch.randn(1, 1, 60, 60))
    pooled = create("plaincnn", in_chans=1, input_size=30)
    assert pooled.fc.in_features == 64 and pooled(torch.randn(1, 1, 60, 60)).shape == (1, 10)
