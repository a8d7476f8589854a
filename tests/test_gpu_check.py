"""`make gpu-check` without CUDA: one line, exit status 0, nothing written."""

from __future__ import annotations

from pathlib import Path

import torch

from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    return load_script("benchmarks", "gpu_check")


def test_without_cuda_one_line_and_exit_0(monkeypatch, capsys, tmp_path):
    gpu_check = _gpu_check()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "RESULTS", tmp_path / "results")
    assert gpu_check.main([]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [gpu_check.NO_CUDA] and not err
    assert not (tmp_path / "results").exists()


def test_make_target_runs_the_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-check:" in makefile and "benchmarks/gpu_check.py" in makefile.split("gpu-check:", 1)[1][:200]
