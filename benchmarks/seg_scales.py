"""The learned residual scales of segmentation runs: how far the zero-initialised attention branches grew.

    python benchmarks/seg_scales.py RUNS_DIR [--out FILE.json]

For every run folder under ``RUNS_DIR`` (as ``visattn compare --task segmentation`` writes them) and each of
its kept checkpoints: CCNet's ``gamma``, DANet's PAM ``alpha`` and CAM ``beta`` (the papers' scales, 0 at
the start), and for the non-local block the mean absolute scale of the BN after W_z (also 0 at the start).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

SCALES = {  # state_dict key suffix -> name
    "decode_head.context.gamma": "cc gamma",
    "decode_head.pam.alpha": "PAM alpha",
    "decode_head.cam.beta": "CAM beta",
    "decode_head.context.norm.weight": "non-local BN scale (mean |w|)",
}


def scales(run: Path) -> list[dict]:
    rows = []
    for ckpt in sorted((run / "checkpoints").glob("epoch-*.pt")):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        found = {name: float(state["model"][key].abs().mean()) for key, name in SCALES.items()
                 if key in state["model"]}
        if found:
            rows.append({"run": run.name, "epoch": int(state["epoch"]), **found})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [r for run in sorted(p for p in args.runs.iterdir() if p.is_dir()) for r in scales(run)]
    for r in rows:
        print(r["run"], r["epoch"], ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in ("run", "epoch")))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
