"""docs/export.md is the registry's export table, and ONNX export of the context modules matches eager."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import visattn
from visattn._export_table import EXPORT_DOC, check_key, table_keys, table_rows
from visattn.ops.attention import plain_attention, softmax_attention

ROOT = Path(__file__).resolve().parents[1]


def test_export_doc_lists_exactly_the_registry_keys():
    text = (ROOT / EXPORT_DOC).read_text()
    assert table_keys(text) == sorted(visattn.list_modules()), "run scripts/gen_export_table.py"


def test_readme_links_the_export_table():
    assert "docs/export.md" in (ROOT / "README.md").read_text()


def test_sdpa_on_3d_tokens_goes_through_4d():
    """Non-local and OC call softmax_attention on (B, N, D) tokens: ONNX export supports only 4-D SDPA."""
    q, k, v = torch.randn(2, 30, 8), torch.randn(2, 20, 8), torch.randn(2, 20, 8)
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(args[0].dim())
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        out = softmax_attention(q, k, v, scale=0.5)
        mask = torch.rand(2, 30, 20) > 0.3
        mask[..., 0] = True
        masked = softmax_attention(q, k, v, attn_mask=mask)
    assert seen == [4, 4]
    torch.testing.assert_close(out, plain_attention(q, k, v, scale=0.5))
    torch.testing.assert_close(masked, plain_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("key", ["nonlocal", "oc", "pam", "se"])
def test_onnx_export_matches_eager(key):
    pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")
    pytest.importorskip("onnxscript", reason="needs the export extra (onnxscript)")
    result = check_key(key, checks=("onnx",))["onnx"]
    assert result.ok, f"{key}: {result.why}"
    assert "dynamic" in result.how


@pytest.mark.slow
def test_regenerated_table_matches_the_committed_one(tmp_path):
    """Every key's row (not the version line) as scripts/gen_export_table.py writes it today."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "export.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_export_table.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert table_rows(out.read_text()) == table_rows((ROOT / EXPORT_DOC).read_text())
