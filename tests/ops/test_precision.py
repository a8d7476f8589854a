"""The one compute-dtype rule: float64 stays float64, everything else computes in float32."""

import pytest
import torch

from visattn.ops import compute_dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, None])
def test_everything_but_float64_computes_in_float32(dtype):
    assert compute_dtype(dtype) is torch.float32
    if dtype is not None:
        assert compute_dtype(torch.zeros(2, dtype=dtype)) is torch.float32


def test_float64_anywhere_wins():
    assert compute_dtype(torch.float64) is torch.float64
    assert compute_dtype(torch.zeros(1, dtype=torch.float16), torch.zeros(1, dtype=torch.float64)) is torch.float64


def test_no_module_writes_the_rule_out_again():
    from pathlib import Path

    import visattn

    src = Path(visattn.__file__).parent
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "precision.py" and "float64 else torch.float32" in p.read_text()]
    assert offenders == []
