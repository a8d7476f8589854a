"""Has the spatial transformer learnt to localise? Its theta on cluttered test images (run by hand).

For each ST-CNN run folder given: theta's mean and spread over the first 512 test images, the spread of
its determinant (a zoom that differs per image), and the correlation of its translation with where the
item really is (the data set's ``item_centres``). The same measures, and more, are recorded at every evaluation
of a training run now (``loc_*`` in metrics.jsonl; :mod:`visattn.train.localisation`).

    python benchmarks/stn_theta.py benchmarks/results/cluttered-compare/stn-s0 ... --out FILE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from visattn.data.loader import BatchLoader, load_dataset
from visattn.train.run import load_run


@torch.no_grad()
def theta_report(run: Path, images: int = 512) -> dict:
    opened = load_run(run)  # the run's own model, weights and recipe (older folders rebuild through the task)
    config, model = opened.config, opened.model
    _, test = load_dataset(config.dataset, config.data_dir, val_limit=images, dataset_kwargs=config.dataset_kwargs)
    x, _ = next(iter(BatchLoader(test, images)))
    theta = model.transform.attention_map(x)  # [N, 2, 3]
    det = torch.linalg.det(theta[:, :, :2])
    canvas = torch.tensor(test.images.shape[-1:-3:-1], dtype=torch.float64)  # (W, H)
    centre_x, centre_y = (test.images.item_centres() / canvas * 2 - 1).unbind(1)  # normalised, as theta's

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])

    return {"run": str(run), "transform_lr_scale": config.transform_lr_scale, "images": images,
            "theta_mean": theta.mean(0).tolist(), "theta_std": theta.std(0).tolist(),
            "det_mean": float(det.mean()), "det_std": float(det.std()),
            "corr_tx_item_x": corr(theta[:, 0, 2], centre_x), "corr_ty_item_y": corr(theta[:, 1, 2], centre_y)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    reports = [theta_report(run) for run in args.runs]
    args.out.write_text(json.dumps({"command": "python benchmarks/stn_theta.py " + " ".join(map(str, args.runs))
                                    + f" --out {args.out}", "runs": reports}, indent=2) + "\n")
    for r in reports:
        spread = max(map(max, r["theta_std"]))
        print(f"{r['run']}: det {r['det_mean']:.3f} ± {r['det_std']:.4f}, theta std {spread:.4f}, "
              f"corr(tx, item x) {r['corr_tx_item_x']:.2f}, corr(ty, item y) {r['corr_ty_item_y']:.2f}")


if __name__ == "__main__":
    main()
