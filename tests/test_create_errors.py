"""Bad constructor arguments and empty inputs: a ValueError naming the module, the same for every key."""

import warnings

import pytest
import torch

import visattn

KEYS = visattn.list_modules()


def _build(key, channels=64, **kwargs):
    if visattn.info(key).size_bound:
        kwargs.setdefault("feature_size", (8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-element init warnings
        return visattn.create(key, channels, **kwargs)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("channels", [0, -4, 8.0, True, "64"])
def test_bad_channels_name_the_module(key, channels):
    with pytest.raises(ValueError, match=visattn.info(key).cls.__name__):
        _build(key, channels)


@pytest.mark.parametrize("key", [k for k in KEYS if "reduction" in visattn.info(k).defaults])
@pytest.mark.parametrize("value", [0, -2])
def test_zero_or_negative_reduction_names_the_module(key, value):
    with pytest.raises(ValueError, match=rf"{visattn.info(key).cls.__name__}.*reduction"):
        _build(key, reduction=value)


def test_constructor_failures_become_value_errors_naming_the_module():
    with pytest.raises(ValueError, match=r"SqueezeExcite \('se'\).*reduction='abc'"):
        visattn.create("se", 64, reduction="abc")  # a TypeError inside the constructor
    with pytest.raises(TypeError, match="did you mean 'reduction'"):  # unknown names stay TypeError
        visattn.create("se", 64, reductio=4)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("shape", [(0, 64, 8, 8), (2, 64, 0, 8), (2, 64, 8, 0)])
def test_zero_size_input_names_the_module(key, shape):
    module = _build(key).eval()
    x = torch.zeros(shape)
    args = (x, torch.zeros(shape[0], 64, 4, 4)) if visattn.info(key).role == "gate" else (x,)
    with pytest.raises(ValueError, match=rf"{visattn.info(key).cls.__name__}: expected a non-empty"):
        module(*args)
