import pytest
import torch
from torch import nn

import visattn
from tests._build import build, make_inputs, min_size
from visattn.viz import Recorder
from visattn.viz.recorder import outermost
from visattn.viz.show import module_pictures

BATCH = 3


def _alone(key: str):
    """The module built alone at C = 64 (size-bound ones for 16 x 16), in eval mode, and its inputs."""
    module = build(key, size=(16, 16)).eval()
    assert min_size(module) <= 16
    return module, make_inputs(key, BATCH, 64, (16, 16), gen=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("key", visattn.list_modules())
def test_every_module_records_its_weights(key):
    module, inputs = _alone(key)
    rec = Recorder(module)
    if not rec.sites:
        pytest.fail(f"visattn module {key!r} ({type(module).__name__}) has no submodule named 'gate' or 'attend': "
                    "visattn.viz cannot record its weights. Give the step that computes them its own submodule "
                    "(see docs/contributing.md).")
    with rec, torch.no_grad():
        module(*inputs)
        if not any(rec.records.values()) and visattn.info(key).role == "context":
            # A context module may never materialise its attention in forward (SDPA, blocked kernels); its
            # attention_map computes it explicitly, through the same attend step.
            module.attention_map(*inputs)
    assert rec.modules[""] == key
    for site in rec.sites.values():  # owner: the innermost visattn module (VAN holds an LKA)
        assert site.name in ("gate", "attend") and rec.modules[site.owner] == site.key
    recorded = [t for ts in rec.records.values() for t in ts]
    assert recorded, f"{key}: the steps {list(rec.sites)} were not called in the forward pass"
    for path, ts in rec.records.items():
        for t in ts:
            assert t.dim() >= 2 and t.shape[0] == BATCH, f"{key}: {path} recorded {tuple(t.shape)}"
            assert torch.isfinite(t).all(), f"{key}: {path} recorded non-finite weights"
            assert t.device.type == "cpu" and not t.requires_grad


@pytest.mark.parametrize("key", visattn.list_modules())
def test_every_module_gives_a_picture(key):
    """What `visattn show` draws for each module alone: at least one picture of the batch, and no complaint."""
    module, inputs = _alone(key)
    with Recorder(module, inputs=True) as rec, torch.no_grad():
        module(*inputs)
    items, notes = module_pictures(module, "", rec, (0.5, 0.5))
    assert not notes, notes
    assert items, f"{key}: nothing to draw"
    for it in items:
        assert it.picture.data.shape[0] == BATCH and torch.isfinite(it.picture.data).all()


class Net(nn.Module):
    """A small throwaway model with visattn modules at known paths."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(visattn.create("cbam", 16, reduction=4), nn.ReLU(), visattn.create("coord", 16),
                                    visattn.create("triplet", 16))
        self.se = visattn.create("se", 16, reduction=4)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.se(self.blocks(self.stem(x)))
        return self.head(x.mean((2, 3)))


def _randomized(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_paths_owners_and_calls():
    model = _randomized(Net())
    x = torch.randn(2, 3, 9, 11)
    with Recorder(model) as rec, torch.no_grad():
        model(x)
    assert rec.modules == {"blocks.0": "cbam", "blocks.2": "coord", "blocks.3": "triplet", "se": "se"}
    assert list(rec.sites) == ["blocks.0.channel_gate.gate", "blocks.0.spatial_gate.gate", "blocks.2.gate",
                               "blocks.3.cw.gate", "blocks.3.hc.gate", "blocks.3.hw.gate", "se.gate"]
    site = rec.sites["blocks.0.spatial_gate.gate"]
    assert (site.owner, site.key, site.name) == ("blocks.0", "cbam", "gate")
    assert [tuple(t.shape) for t in rec.records["blocks.2.gate"]] == [(2, 16, 9, 1), (2, 16, 1, 11)]  # a_h, a_w
    assert [tuple(t.shape) for t in rec.records["blocks.0.spatial_gate.gate"]] == [(2, 1, 9, 11)]
    assert [tuple(t.shape) for t in rec.records["se.gate"]] == [(2, 16, 1, 1)]


def test_records_are_the_weights_the_modules_apply():
    model = _randomized(Net())
    x = torch.randn(2, 3, 8, 8)
    with Recorder(model, inputs=True) as rec, torch.no_grad():
        model(x)
    se_in = rec.inputs["se"][0][0]
    # y = x * s: the recorded gate is the factor between the module's output and its input
    s = rec.records["se.gate"][0]
    assert torch.allclose(model.se(se_in), se_in * s)
    assert torch.allclose(s, model.se.attention_map(se_in))
    cbam_in = rec.inputs["blocks.0"][0][0]
    m_c, m_s = model.blocks[0].attention_map(cbam_in)
    assert torch.allclose(rec.records["blocks.0.channel_gate.gate"][0].view(2, 16), m_c.view(2, 16))
    assert torch.allclose(rec.records["blocks.0.spatial_gate.gate"][0], m_s)
    coord_in = rec.inputs["blocks.2"][0][0]
    a_h, a_w = rec.records["blocks.2.gate"]
    assert torch.allclose(a_h * a_w, model.blocks[2].attention_map(coord_in))


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_eject_leaves_the_model_unchanged():
    model = _randomized(Net())
    x = torch.randn(2, 3, 10, 7)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
        rec = Recorder(model, inputs=True).attach()
        assert _hook_count(model) > 0
        during = model(x)
        assert rec.eject() is model
        after = model(x)
    assert torch.equal(before, during) and torch.equal(before, after)
    assert _hook_count(model) == 0
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    n = {k: len(v) for k, v in rec.records.items()}
    with torch.no_grad():
        model(x)
    assert {k: len(v) for k, v in rec.records.items()} == n  # nothing recorded once ejected


def test_gradients_unchanged_with_the_recorder():
    model = _randomized(Net()).train()
    x = torch.randn(2, 3, 8, 8)
    model(x).square().sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with Recorder(model, inputs=True):
        model(x).square().sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, model.parameters(), strict=True))


def test_call_clear_and_several_forwards():
    model = _randomized(Net())
    x = torch.randn(2, 3, 8, 8)
    rec = Recorder(model)
    with torch.no_grad():
        out, records = rec(x)  # lucidrains style: attaches, runs, returns (output, records)
        assert torch.equal(out, model(x))
    assert records is rec.records and len(records["se.gate"]) == 2  # both forwards, still attached
    assert len(records["blocks.2.gate"]) == 4
    rec.clear()
    assert all(len(v) == 0 for v in rec.records.values())
    with rec.paused(), torch.no_grad():
        model(x)
    assert all(len(v) == 0 for v in rec.records.values())
    with torch.no_grad():
        model(x)
    assert len(rec.records["se.gate"]) == 1
    rec.eject()


def test_records_are_copies():
    class Shrink(nn.Module):  # changes its gate's output in place after the gate ran
        def __init__(self):
            super().__init__()
            self.inner = visattn.create("se", 8, reduction=2)

        def forward(self, x):
            s = self.inner.gate(self.inner.fc2(self.inner.act(self.inner.fc1(x.mean((2, 3), keepdim=True)))))
            expected = s.clone()
            s.mul_(0)
            return x * s, expected

    model = Shrink().eval()
    with Recorder(model) as rec, torch.no_grad():
        _, expected = model(torch.randn(2, 8, 4, 4))
    assert torch.equal(rec.records["inner.gate"][0], expected)


def test_site_and_input_filters():
    model = Net()
    rec = Recorder(model, sites=["se.gate"], inputs=["blocks.2"])
    assert list(rec.sites) == ["se.gate"]
    with rec, torch.no_grad():
        model(torch.randn(1, 3, 6, 6))
    assert list(rec.records) == ["se.gate"] and len(rec.records["se.gate"]) == 1
    assert list(rec.inputs) == ["blocks.2"] and rec.inputs["blocks.2"][0][0].shape == (1, 16, 6, 6)
    with pytest.raises(ValueError, match="not gate/attend steps"):
        Recorder(model, sites=["stem"])
    with pytest.raises(ValueError, match="not visattn modules"):
        Recorder(model, inputs=["head"])


def test_nested_modules_innermost_owner_outermost_for_pictures():
    model = nn.Sequential(nn.Conv2d(3, 32, 1), visattn.create("van", 32))
    rec = Recorder(model)
    assert rec.modules == {"1": "van", "1.spatial_gating_unit": "lka"}
    assert rec.sites["1.spatial_gating_unit.gate"].owner == "1.spatial_gating_unit"
    assert rec.sites["1.spatial_gating_unit.gate"].key == "lka"
    assert outermost(rec.modules) == ["1"]
    assert outermost(["", "a", "a.b"]) == [""]
    assert outermost(["a", "ab", "a.b"]) == ["a", "ab"]


def test_a_model_without_attention_records_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with Recorder(model) as rec:
        model(torch.randn(1, 3, 5, 5))
    assert rec.sites == {} and rec.records == {} and rec.modules == {}
