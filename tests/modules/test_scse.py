"""scSE against the paper's equations (float64, einsum), the three fusions, and the official layout."""

import pytest
import torch

import visattn
from tests._build import randomize_
from visattn.modules.scse import SCSE


def reference_scse(x, m: SCSE, fusion):
    """U_cSE = U sigma(W2 relu(W1 GAP(U) + b1) + b2); U_sSE = U sigma(w . U_ij + b); f(U_cSE, U_sSE)."""
    z = x.mean(dim=(2, 3))
    hidden = torch.relu(torch.einsum("rc,bc->br", m.cse.fc1.weight, z) + m.cse.fc1.bias)
    s_c = torch.sigmoid(torch.einsum("cr,br->bc", m.cse.fc2.weight, hidden) + m.cse.fc2.bias)
    s_s = torch.sigmoid(torch.einsum("c,bchw->bhw", m.sse.conv.weight[0, :, 0, 0], x) + m.sse.conv.bias[0])
    u_c = torch.einsum("bchw,bc->bchw", x, s_c)
    u_s = torch.einsum("bchw,bhw->bchw", x, s_s)
    if fusion == "max":
        return torch.where(u_c >= u_s, u_c, u_s)
    if fusion == "add":
        return u_c + u_s
    return u_c * u_s


@pytest.mark.parametrize("fusion", ["max", "add", "mul"])
def test_matches_paper_equations(fusion):
    m = randomize_(SCSE(24, fusion=fusion), std=0.5).double()
    x = torch.randn(2, 24, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_scse(x, m, fusion))
    s_c, s_s = m.attention_map(x)
    assert s_c.shape == (2, 24, 1, 1) and s_s.shape == (2, 1, 5, 7)


def test_max_fusion_picks_per_element():
    # Max of the two recalibrations, per element (not of the weights): for x < 0 it takes the smaller weight.
    m = randomize_(SCSE(8), std=0.5).double()
    x = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    s_c, s_s = m.attention_map(x)
    w = torch.where(x >= 0, torch.maximum(s_c, s_s), torch.minimum(s_c, s_s))
    torch.testing.assert_close(m(x), x * w)


def test_widths_and_official_layout():
    m = visattn.create("scse", 64)
    assert m.cse.fc1.out_features == 32 and m.fusion == "max"  # r = 2, official default fusion
    assert SCSE(64, reduction=16).cse.fc1.out_features == 4
    assert SCSE(64, rd_channels=5).cse.fc1.out_features == 5
    assert sum(p.numel() for p in m.parameters()) == (64 * 32 + 32 + 32 * 64 + 64) + (64 + 1)
    # The official ChannelSpatialSELayer's keys, with its cSE / sSE attribute names.
    official = {"cSE.fc1.weight", "cSE.fc1.bias", "cSE.fc2.weight", "cSE.fc2.bias", "sSE.conv.weight", "sSE.conv.bias"}
    assert {k.replace("cse.", "cSE.").replace("sse.", "sSE.") for k in m.state_dict()} == official


def test_bad_arguments():
    with pytest.raises(ValueError, match="SCSE: fusion"):
        SCSE(64, fusion="concat")
