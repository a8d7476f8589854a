"""When does the spatial transformer start to localise? Accuracy and localisation per epoch of ST-CNN runs (issue 21).

    python benchmarks/stn_budget.py runs/stn-budget --out benchmarks/results/cluttered-stn-budget \
        [--window-epochs 1,3,10] [--images 6]

``runs/stn-budget`` is a ``visattn compare`` folder of ``<variant>-s<seed>`` runs on cluttered Fashion-MNIST,
the plain network (``none``) among them; the ST-CNN runs recorded the localisation measures
(:mod:`visattn.train.localisation`) at every evaluation, so this script reads numbers, it trains nothing.
It writes into ``--out``:

- ``budget.md`` / ``budget.json``: per epoch (and the training steps and images seen by then), each
  variant's top-1 (mean ± std over seeds), its per-seed difference to the plain network (mean ± std),
  and for ST-CNNs the localisation measures (mean ± std over seeds); the first epoch from which the
  window is closer to the item than one fixed window on every seed, and from which the window's centre
  follows the item (slope of its x and y on the item's above 0.5 on every seed);
- ``curve.png``: those numbers against training steps;
- the localisation net's hidden units per kept epoch (:func:`hidden_units`): do they still fire, and
  differently per image?
- ``windows.png`` (when the runs kept their checkpoints: ``--keep-checkpoints 0``): the sampling window
  (:func:`visattn.viz.window.sampling_window`) of each ST variant's seed-0 run on the same test images at
  several epochs, the item's true centre marked;
- each run's ``config.json``, ``run.json``, ``metrics.jsonl`` and ``result.json`` (no checkpoints).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from pathlib import Path

import torch

from visattn.data.loader import BatchLoader, load_dataset
from visattn.stats import paired_differences
from visattn.train.checkpoint import epoch_checkpoints
from visattn.train.localisation import LOCALISATION_KEYS
from visattn.train.logs import read_jsonl
from visattn.train.run import load_run
from visattn.viz.window import sampling_window

#: Measures drawn and tabulated (all of LOCALISATION_KEYS go to the JSON).
SHOWN = ("mean_abs_det", "theta_std", "corr_x", "slope_x", "slope_y", "centre_distance_px")
#: A window "follows" the item when the slope of its centre on the item's exceeds this, in x and in y.
FOLLOWS = 0.5
KEPT = ("config.json", "run.json", "metrics.jsonl", "result.json")


def _runs(folder: Path) -> dict[str, dict[int, Path]]:
    runs: dict[str, dict[int, Path]] = {}
    for run in sorted(folder.iterdir()):
        m = re.fullmatch(r"(.+)-s(\d+)", run.name)
        if m and (run / "metrics.jsonl").is_file():
            runs.setdefault(m.group(1), {})[int(m.group(2))] = run
    if "none" not in runs:
        raise SystemExit(f"{folder}: no plain network (none-s<seed>) among the runs")
    return runs


def _epochs(run: Path) -> dict[int, dict]:
    return {r["epoch"]: r for r in read_jsonl(run / "metrics.jsonl") if "val_accuracy" in r}


def _spread(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "seeds": len(values), "values": values}


def _cell(s: dict | None, digits: int = 2, sign: bool = False) -> str:
    if s is None:
        return ""
    text = f"{s['mean']:+.{digits}f}" if sign else f"{s['mean']:.{digits}f}"
    return text + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def summarise(runs: dict[str, dict[int, Path]]) -> dict:
    """Per variant and epoch: accuracy, Δ to the plain network per seed, localisation measures (over seeds)."""
    metrics = {v: {seed: _epochs(run) for seed, run in seeds.items()} for v, seeds in runs.items()}
    plain = metrics["none"]
    config = json.loads((next(iter(runs["none"].values())) / "config.json").read_text())
    steps_per_epoch = config["train_limit"] // config["batch_size"]  # drop_last
    out: dict = {"steps_per_epoch": steps_per_epoch, "images_per_epoch": config["train_limit"], "variants": {}}
    for variant, seeds in metrics.items():
        epochs = sorted(set.intersection(*(set(e) for e in seeds.values())))
        rows = []
        for epoch in epochs:
            acc = {s: e[epoch]["val_accuracy"] for s, e in seeds.items()}
            row = {"epoch": epoch, "steps": epoch * steps_per_epoch, "accuracy": _spread(list(acc.values()))}
            base = {s: e[epoch]["val_accuracy"] for s, e in plain.items() if epoch in e}
            if variant != "none" and base:
                row["delta"] = _spread(paired_differences(acc, base))
            if all(f"loc_{LOCALISATION_KEYS[0]}" in e[epoch] for e in seeds.values()):
                row["localisation"] = {k: _spread([e[epoch][f"loc_{k}"] for e in seeds.values()])
                                       for k in LOCALISATION_KEYS}
                at = [e[epoch] for e in seeds.values()]
                row["closer_than_fixed"] = all(r["loc_centre_distance_px"] < r["loc_baseline_distance_px"] for r in at)
                row["follows"] = all(min(r["loc_slope_x"] or 0, r["loc_slope_y"] or 0) > FOLLOWS for r in at)
            rows.append(row)
        first = {key: next((r["epoch"] for r in rows if r.get(key)), None) for key in ("closer_than_fixed", "follows")}
        out["variants"][variant] = {"seeds": sorted(seeds), "rows": rows, "first": first}
    return out


def markdown(summary: dict, command: str) -> str:
    lines = ["# The spatial transformer's budget curve on cluttered Fashion-MNIST", "", f"`{command}`", "",
             f"One epoch: {summary['images_per_epoch']:,} images, {summary['steps_per_epoch']} steps. Numbers are "
             "mean ± std over the seeds; Δ is the per-seed difference of top-1 to the plain CNN's (same seed, "
             "same data order). The localisation measures are `visattn.train.localisation`'s on the validation "
             "images: |det| is the window's area as a fraction of the canvas, distance is from the window's "
             "centre to the item's, next to one fixed window at the items' mean position.", ""]
    for variant, v in summary["variants"].items():
        lines += [f"## {variant} (seeds {', '.join(map(str, v['seeds']))})", ""]
        has_loc = any("localisation" in r for r in v["rows"])
        head = ["epoch", "steps", "top-1 %"] + ([] if variant == "none" else ["Δ vs plain"])
        if has_loc:
            head += ["window area (abs det)", "theta std", "corr x", "slope x", "slope y", "distance px (fixed window)"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in v["rows"]:
            cells = [str(r["epoch"]), f"{r['steps']:,}", _cell(r["accuracy"])]
            if variant != "none":
                cells.append(_cell(r.get("delta"), sign=True))
            if has_loc and "localisation" in r:
                loc = r["localisation"]
                cells += [_cell(loc["mean_abs_det"], 3), _cell(loc["theta_std"], 3), _cell(loc["corr_x"]),
                          _cell(loc["slope_x"]), _cell(loc["slope_y"]),
                          f"{_cell(loc['centre_distance_px'], 1)} ({_cell(loc['baseline_distance_px'], 1)})"]
            lines.append("| " + " | ".join(cells) + " |")
        hidden = summary.get("hidden_units", {}).get(variant)
        if hidden:
            lines += ["", "The localisation net's last hidden layer (the input of `fc_loc`) on the first (up to) 256 "
                      "validation images, per kept epoch: share of units that fire on any image / mean spread of a "
                      "unit over the images, per seed:", "",
                      "| epoch | " + " | ".join(f"seed {s}" for s in hidden) + " |",
                      "|---|" + "---|" * len(hidden)]
            for i, row in enumerate(next(iter(hidden.values()))):
                cells = [f"{h[i]['alive']:.2f} / {h[i]['spread']:.4f}" if i < len(h) else "" for h in hidden.values()]
                lines.append(f"| {row['epoch']} | " + " | ".join(cells) + " |")
        if has_loc:
            first = v["first"]
            closer = (f"epoch {first['closer_than_fixed']}" if first["closer_than_fixed"] else
                      "never within this budget")
            follows = f"epoch {first['follows']}" if first["follows"] else "never within this budget"
            lines += ["", f"Window closer to the item than one fixed window on every seed: {closer}. Window centre "
                      f"follows the item (slope > {FOLLOWS} in x and y on every seed): {follows}."]
        lines.append("")
    return "\n".join(lines)


def plot_curve(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    colour = {v: f"C{i}" for i, v in enumerate(summary["variants"])}  # one colour per variant in every panel
    panels = [("top-1 %", lambda r: r["accuracy"]),
              ("window centre to item, px", lambda r: r.get("localisation", {}).get("centre_distance_px")),
              ("window area |det|", lambda r: r.get("localisation", {}).get("mean_abs_det")),
              ("slope of window x on item x", lambda r: r.get("localisation", {}).get("slope_x"))]
    for ax, (title, get) in zip(axes, panels, strict=True):
        for variant, v in summary["variants"].items():
            points = [(r["steps"], get(r)) for r in v["rows"] if get(r) is not None]
            if not points:
                continue
            x = [p for p, _ in points]
            mean = [s["mean"] for _, s in points]
            err = [s["std"] or 0 for _, s in points]
            ax.errorbar(x, mean, yerr=err, marker="o", ms=3, capsize=2, label=variant, color=colour[variant])
        if title.startswith("window centre"):
            rows = next((v["rows"] for v in summary["variants"].values()
                         if any("localisation" in r for r in v["rows"])), [])
            fixed = [r["localisation"]["baseline_distance_px"]["mean"] for r in rows if "localisation" in r]
            if fixed:
                ax.axhline(fixed[0], color="grey", ls="--", lw=1, label="one fixed window")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle("ST-CNN on cluttered Fashion-MNIST: accuracy and localisation per epoch (mean ± std over seeds)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fc_loc_input(transform: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the transformer's last layer ``fc_loc`` reads on ``x``: the localisation net's hidden units."""
    seen = []
    hook = transform.fc_loc.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        transform.attention_map(x)
    finally:
        hook.remove()
    return seen[0]


@torch.no_grad()
def hidden_units(runs: dict[str, dict[int, Path]], images: int = 256) -> dict[str, dict[int, list[dict]]]:
    """Per ST run and kept epoch: how many of the localisation net's last hidden units fire, and how much.

    The transformer's theta is ``fc_loc(h)``; when the units of ``h`` stop firing (ReLUs that died) or fire alike
    on every image, theta is the same for every image whatever ``fc_loc`` learns. For each kept checkpoint:
    ``alive`` (the share of units positive on at least one of the first ``images`` validation images) and
    ``spread`` (the units' standard deviation over those images, averaged over units).
    """
    out: dict[str, dict[int, list[dict]]] = {}
    val = x = None
    for variant, seeds in runs.items():
        for seed, run in seeds.items():
            if json.loads((run / "config.json").read_text()).get("transform") is None:
                continue
            for epoch in epoch_checkpoints(run / "checkpoints"):
                opened = load_run(run, epoch=epoch)
                if x is None:
                    config = opened.config
                    _, val = load_dataset(config.dataset, config.data_dir, val_limit=config.val_limit,
                                          dataset_kwargs=config.dataset_kwargs, subset_seed=config.subset_seed)
                    x, _ = next(iter(BatchLoader(val, images)))
                h = _fc_loc_input(opened.model.transform, x)
                out.setdefault(variant, {}).setdefault(seed, []).append(
                    {"epoch": epoch, "alive": float((h > 0).any(0).float().mean()), "spread": float(h.std(0).mean())})
    return out


@torch.no_grad()
def plot_windows(runs: dict[str, dict[int, Path]], epochs: list[int], images: int, path: Path) -> list[str]:
    """Each ST variant's seed-0 windows on the same validation images at ``epochs``; returns the rows drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for variant, seeds in runs.items():
        run = seeds.get(0)
        if run is None or json.loads((run / "config.json").read_text()).get("transform") is None:
            continue
        for epoch in epochs:
            try:
                rows.append((variant, epoch, load_run(run, epoch=epoch)))
            except ValueError as err:
                print(f"skipped {variant} epoch {epoch}: {err}")
    if not rows:
        return []
    config = rows[0][2].config
    _, val = load_dataset(config.dataset, config.data_dir, val_limit=config.val_limit,
                          dataset_kwargs=config.dataset_kwargs, subset_seed=config.subset_seed)
    x, y = next(iter(BatchLoader(val, images)))
    pixels = val.images[list(range(images))].float()  # [N, 1, H, W] rendered uint8 -> float
    centres = val.images.item_centres()[:images]
    size = tuple(pixels.shape[-2:])
    fig, axes = plt.subplots(len(rows), images, figsize=(1.9 * images, 2.0 * len(rows)), squeeze=False)
    for i, (variant, epoch, opened) in enumerate(rows):
        theta = opened.model.transform.attention_map(x)
        corners = sampling_window(theta, size)  # [N, 4, 2] (x, y) pixels
        for j in range(images):
            ax = axes[i][j]
            ax.imshow(pixels[j, 0], cmap="gray", extent=(0, size[1], size[0], 0))
            poly = torch.cat([corners[j], corners[j][:1]])
            ax.plot(poly[:, 0], poly[:, 1], color="#ff3030", lw=1.5)
            ax.plot(*centres[j].tolist(), marker="+", color="#30c0ff", ms=9, mew=2)
            ax.set_xlim(-2, size[1] + 2)  # a margin: a window as large as the canvas stays visible
            ax.set_ylim(size[0] + 2, -2)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{variant}\nepoch {epoch}", fontsize=8)
    fig.suptitle("Sampling windows (red outline, clipped at the picture's edge: a window larger than the canvas "
                 "shows only the edges that cross it) of the seed-0 runs; + the item's true centre", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [f"{variant} epoch {epoch}" for variant, epoch, _ in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="a visattn compare folder of <variant>-s<seed> runs")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--window-epochs", default="1,3,10", help="epochs whose windows are drawn (default 1,3,10)")
    p.add_argument("--images", type=int, default=6, help="validation images per row of windows.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    runs = _runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/stn_budget.py " + str(args.runs) + f" --out {args.out} --window-epochs "
               f"{args.window_epochs} --images {args.images}")
    summary = summarise(runs)
    summary["command"] = command
    for seeds in runs.values():
        for run in seeds.values():
            (args.out / run.name).mkdir(exist_ok=True)
            for name in KEPT:
                if (run / name).is_file():
                    shutil.copyfile(run / name, args.out / run.name / name)
    for name in ("leaderboard.md", "leaderboard.json"):
        if (args.runs / name).is_file():
            shutil.copyfile(args.runs / name, args.out / name)
    plot_curve(summary, args.out / "curve.png")
    epochs = [int(e) for e in args.window_epochs.split(",") if e.strip()]
    summary["windows"] = plot_windows(runs, epochs, args.images, args.out / "windows.png")
    summary["hidden_units"] = hidden_units(runs)
    (args.out / "budget.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "budget.md").write_text(markdown(summary, command))
    print(markdown(summary, command))


if __name__ == "__main__":
    main()
