"""The module contract, checked for every registered key (see design.md, "The module contract")."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.export import Dim

import visattn
from tests._build import CHANNELS, build, expected_shape, make_inputs, min_size, perturbed

KEYS = visattn.list_modules()


def _run(module, inputs):
    return module(*inputs)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("batch,size", [(2, (16, 16)), (1, (7, 13))])
def test_shape_dtype_device_preserved(key, batch, size):
    m = perturbed(key, build(key, size=size))
    if min(size) < min_size(m):
        pytest.skip(f"{key} needs H, W >= {min_size(m)}")
    inputs = make_inputs(key, batch, CHANNELS, size)
    for mode in (m.train, m.eval):
        mode()
        y = _run(m, inputs)
        assert y.shape == expected_shape(key, m, inputs)
        assert y.dtype == inputs[0].dtype and y.device == inputs[0].device
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("key", KEYS)
def test_gradients_reach_parameters_and_input(key):
    m = perturbed(key, build(key)).train()
    inputs = tuple(t.requires_grad_() for t in make_inputs(key, 2, CHANNELS, (16, 16)))
    y = _run(m, inputs)
    (y * torch.randn_like(y)).sum().backward()
    for t in inputs:
        assert t.grad is not None and t.grad.abs().sum() > 0
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"{key}: no gradient reaches {dead}"


@pytest.mark.parametrize("key", KEYS)
def test_gradcheck_float64(key):
    size = (5, 6)
    m = build(key, size=size)
    size = (max(size[0], min_size(m)), max(size[1], min_size(m)) + 1)
    m = perturbed(key, build(key, size=size)).double().eval()
    inputs = tuple(t.requires_grad_() for t in make_inputs(key, 1, CHANNELS, size, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda *xs: m(*xs), inputs, fast_mode=True, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("key", KEYS)
def test_bfloat16_forward_finite(key):
    m = perturbed(key, build(key)).eval()
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    ref = _run(m, inputs)
    y = _run(m.to(torch.bfloat16), tuple(t.to(torch.bfloat16) for t in inputs))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    # bf16 keeps 8 bits of mantissa: a loose relative bound that still catches a branch that goes wrong
    err = (y.float() - ref).norm() / ref.norm().clamp_min(1e-6)
    assert err < 0.1, f"{key}: bf16 output differs from float32 by {err:.3f} (relative norm)"


@pytest.mark.parametrize("key", KEYS)
def test_float64_and_autocast(key):
    m = perturbed(key, build(key, size=(8, 8))).double().eval()
    inputs = make_inputs(key, 1, CHANNELS, (8, 8), dtype=torch.float64)
    assert _run(m, inputs).dtype == torch.float64
    m = perturbed(key, build(key, size=(8, 8))).eval()
    inputs = make_inputs(key, 1, CHANNELS, (8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _run(m, inputs)
    assert torch.isfinite(y.float()).all()


@pytest.mark.parametrize("key", KEYS)
def test_channels_last_matches_contiguous(key):
    m = perturbed(key, build(key)).eval()
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    ref = _run(m, inputs)
    out = _run(m, tuple(t.contiguous(memory_format=torch.channels_last) for t in inputs))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("key", KEYS)
def test_state_dict_round_trip(key):
    m = perturbed(key, build(key)).eval()
    fresh = build(key).eval()
    fresh.load_state_dict(m.state_dict())
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    torch.testing.assert_close(_run(fresh, inputs), _run(m, inputs))


@pytest.mark.parametrize("key", KEYS)
def test_compile_fullgraph_matches_eager(key):
    m = perturbed(key, build(key)).eval()
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(*inputs), _run(m, inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_export_dynamic_hw_matches_eager(key):
    m = perturbed(key, build(key)).eval()
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    if visattn.info(key).size_bound:
        ep = torch.export.export(m, inputs)  # bound to one size: static shapes
        other = inputs
    else:
        lo = max(2, min_size(m))
        h, w = Dim("H", min=lo, max=256), Dim("W", min=lo, max=256)
        if visattn.info(key).role == "gate":
            hg, wg = Dim("Hg", min=1, max=128), Dim("Wg", min=1, max=128)
            shapes = ({2: h, 3: w}, {2: hg, 3: wg})
        else:
            shapes = ({2: h, 3: w},)
        ep = torch.export.export(m, inputs, dynamic_shapes=shapes)
        other = make_inputs(key, 2, CHANNELS, (max(lo, 12), max(lo, 10) + 1))
    torch.testing.assert_close(ep.module()(*other), _run(m, other), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_wrong_channels_and_rank_raise_clear_error(key):
    m = build(key).eval()
    name = type(m).__name__
    x, *rest = make_inputs(key, 2, CHANNELS, (16, 16))
    wrong = torch.randn(2, CHANNELS + 3, 16, 16)
    with pytest.raises(ValueError, match=re.escape(name)) as err:
        m(wrong, *rest)
    assert str(CHANNELS) in str(err.value) and "(2, 67, 16, 16)" in str(err.value)
    with pytest.raises(ValueError, match=re.escape(name)) as err:
        m(x[0], *rest)
    assert f"({CHANNELS}, 16, 16)" in str(err.value)


@pytest.mark.parametrize("key", KEYS)
def test_metadata_complete(key):
    meta = visattn.info(key)
    assert meta.title and meta.paper and meta.authors and meta.venue and 2000 < meta.year < 2030
    assert meta.note, f"{key}: say where the paper and the official code differ (or that they agree)"
    doc = meta.cls.__doc__ or ""
    assert "Shape:" in doc and ">>>" in doc and "Args:" in doc, f"{meta.cls.__name__}: docstring incomplete"
    assert meta.parameter_free == (sum(p.numel() for p in build(key).parameters()) == 0)


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 3), channels=st.sampled_from([32, 64, 96, 128]), h=st.integers(1, 33),
       w=st.integers(1, 33))
def test_hypothesis_random_shapes(key, batch, channels, h, w):
    try:
        m = perturbed(key, build(key, channels=channels, size=(h, w))).eval()
        inputs = make_inputs(key, batch, channels, (h, w))
        y = _run(m, inputs)
    except ValueError as err:  # a documented refusal names the module
        assert visattn.info(key).cls.__name__ in str(err), f"{key}: undocumented ValueError {err}"
        return
    assert y.shape == expected_shape(key, m, inputs)
    assert torch.isfinite(y).all()


IDENTITY_AT_INIT = ("cam", "cc", "pam", "gc", "nonlocal", "stn", "danet")


@pytest.mark.parametrize("key", IDENTITY_AT_INIT)
def test_identity_at_init_modules_are_exercised_once_perturbed(key):
    """The contract tests build modules through ``perturbed``: their attention branch must then change x."""
    inputs = make_inputs(key, 2, CHANNELS, (16, 16))
    plain = _run(build(key).eval(), inputs)
    # identity at initialisation (why we perturb); DANet sums its two branches: 2x
    torch.testing.assert_close(plain, inputs[0] * (2 if key == "danet" else 1))
    out = _run(perturbed(key, build(key)).eval(), inputs)
    assert (out - plain).abs().mean() > 1e-2 * plain.abs().mean()
