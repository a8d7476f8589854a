"""``gate_init``: SE, CBAM and coordinate attention start their gate near a chosen value, not near 1/2."""

import pytest
import torch

import visattn
from visattn.spec import parse_modules


def _zero_gate_weights(m):
    """Zero the weights in front of each sigmoid, so the gate is exactly its bias's sigmoid."""
    if m.__class__.__name__ == "SqueezeExcite":
        m.fc2.weight.data.zero_()
    elif m.__class__.__name__ == "CBAM":
        m.channel_gate.mlp[3].weight.data.zero_()
        if m.spatial_gate is not None:
            m.spatial_gate.spatial.bn.weight.data.zero_()
    else:
        m.conv_h.weight.data.zero_()
        m.conv_w.weight.data.zero_()
    return m


@pytest.mark.parametrize("key,kwargs", [("se", {}), ("cbam", {}), ("cbam", {"no_spatial": True}), ("coord", {})])
@pytest.mark.parametrize("p", [0.9, 0.3])
def test_the_module_starts_as_x_times_gate_init(key, kwargs, p):
    # With the weights in front of the gates at zero, the module's scale is its biases' doing alone: exactly p
    # (CBAM's two gates and coordinate attention's g^h g^w multiply, CBAM's bias is summed over avg and max).
    m = _zero_gate_weights(visattn.create(key, 32, gate_init=p, **kwargs)).double()
    x = torch.randn(2, 32, 6, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), p * x)


@pytest.mark.parametrize("key,default", [("se", 0.5), ("cbam", 0.25), ("coord", 0.25)])
def test_with_its_random_weights_the_scale_is_near_gate_init_and_the_default_is_unchanged(key, default):
    torch.manual_seed(0)
    x = torch.randn(8, 64, 15, 15)
    near = visattn.create(key, 64, gate_init=0.9)(x) / x
    assert abs(near.mean().item() - 0.9) < 0.05
    plain = visattn.create(key, 64)(x) / x
    assert abs(plain.mean().item() - default) < 0.03


def test_the_module_grammar_passes_it():
    (spec,) = parse_modules("cbam:gate_init=0.9")
    m = _zero_gate_weights(visattn.create(spec.key, 16, **dict(spec.kwargs)))
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(m(x), 0.9 * x)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9", float("nan")])
@pytest.mark.parametrize("key", ["se", "cbam", "coord"])
def test_values_outside_the_open_unit_interval_are_refused(key, bad):
    with pytest.raises(ValueError, match="gate_init must be a number in"):
        visattn.create(key, 16, gate_init=bad)


def test_a_gate_without_a_sigmoid_or_without_a_bias_is_refused():
    with pytest.raises(ValueError, match="needs the sigmoid gate"):
        visattn.create("se", 16, gate_init=0.9, gate_layer="tanh")
    with pytest.raises(ValueError, match="needs the sigmoid gate"):
        visattn.create("coord", 16, gate_init=0.9, gate_layer="hard_sigmoid")
    with pytest.raises(ValueError, match="needs a bias"):
        visattn.create("se", 16, gate_init=0.9, bias=False)
