"""Why does ResNet-20 + CBAM start slower than the plain ResNet-20? visattn's modules against timm's (run by hand).

Issue 12 reported ResNet-20 + CBAM about 30 points behind the plain network after ~62 training steps on
cluttered images. This script separates the mechanism from visattn's code:

1. Gate statistics at initialisation, on one batch of cluttered training images (train-mode BN): the mean
   and spread of every sigmoid gate, and how much the module scales its residual branch
   (``|attn(r)| / |r|`` per block).
2. Short training runs with visattn's own trainer and recipe (SGD + Nesterov, one-cycle lr 0.1, weight
   decay 5e-4 on weights only): the plain ResNet-20, visattn's SE and CBAM, timm's ``SEModule`` and
   ``CbamModule`` put into the same slots of the same ResNet-20 (after the last BN of each residual
   branch), and the published remedy, a zero-initialised last BN in every residual branch (torchvision's
   ``zero_init_residual``; Goyal et al. 2017), so every block starts as the identity whatever its gate;
   and visattn's ``gate_init=0.9`` (SE, CBAM), which starts each block's gate product near 0.9 instead of
   near 1/2 (SE) or 1/4 (CBAM).
3. For visattn's CBAM: the test accuracy again after re-estimating the BN running statistics on training
   batches, which shows how much the slow-moving statistics of the spatial gate's BN (momentum 0.01, the
   official code's) cost at evaluation after a short run.

    python benchmarks/slow_start.py --threads 1

writes ``benchmarks/results/slow-start/{slow-start.json, slow-start.md}`` and the run folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from visattn.backbones import BasicBlock, create
from visattn.data.loader import BatchLoader, load_dataset
from visattn.train.checkpoint import load_latest
from visattn.train.config import TrainConfig
from visattn.train.tasks import ClassificationTask
from visattn.train.trainer import train

OUT = Path(__file__).parent / "results" / "slow-start"


class VariantTask(ClassificationTask):
    """The classification task with the variant's own model (the trainer calls the task, nothing else)."""

    def __init__(self, factory: Callable[[], nn.Module]):
        self.factory = factory

    def build_model(self, config, train) -> nn.Module:
        return self.factory()


def _with_timm(module_factory: Callable[[int], nn.Module], size: int, zero_init: bool = False) -> nn.Module:
    model = create("resnet20", in_chans=1, input_size=size, zero_init_residual=zero_init)
    for block in model.modules():
        if isinstance(block, BasicBlock):
            block.set_attention(module_factory(block.bn2.num_features), "standard")
    return model


def variants(size: int) -> dict[str, Callable[[], nn.Module]]:
    from timm.layers.cbam import CbamModule
    from timm.layers.squeeze_excite import SEModule

    return {
        "none": lambda: create("resnet20", in_chans=1, input_size=size),
        "se (visattn)": lambda: create("resnet20", "se", in_chans=1, input_size=size),
        "se (timm SEModule)": lambda: _with_timm(SEModule, size),
        "cbam (visattn)": lambda: create("resnet20", "cbam", in_chans=1, input_size=size),
        "cbam (timm CbamModule)": lambda: _with_timm(CbamModule, size),
        "cbam (visattn) + zero-init residual": lambda: create("resnet20", "cbam", in_chans=1, input_size=size,
                                                              zero_init_residual=True),
        "none + zero-init residual": lambda: create("resnet20", in_chans=1, input_size=size, zero_init_residual=True),
        "se (visattn) gate_init=0.9": lambda: create("resnet20", "se", {"gate_init": 0.9}, in_chans=1, input_size=size),
        "cbam (visattn) gate_init=0.9": lambda: create("resnet20", "cbam", {"gate_init": 0.9}, in_chans=1,
                                                       input_size=size),
    }


@torch.no_grad()
def gate_statistics(model: nn.Module, x: torch.Tensor) -> dict:
    """Mean / std of every sigmoid gate's output and the per-block branch scale ``|attn(r)| / |r|``."""
    gates: dict[str, list[float]] = {}
    scales: list[float] = []
    handles = []
    for name, module in model.named_modules():
        if name.endswith(".gate") and type(module).__name__ == "Sigmoid":  # torch's or timm's sigmoid gate
            kind = "spatial" if "spatial" in name else "channel"
            handles.append(module.register_forward_hook(
                lambda m, a, out, kind=kind: gates.setdefault(kind, []).extend(out.flatten().tolist()[:4096])))
        if isinstance(module, BasicBlock) and module.attn is not None:
            handles.append(module.attn.register_forward_hook(
                lambda m, a, out: scales.append((out.norm() / a[0].norm()).item())))
    model.train()
    model(x)
    for h in handles:
        h.remove()
    out = {f"{k}_gate_mean": statistics.fmean(v) for k, v in gates.items()}
    out.update({f"{k}_gate_std": statistics.pstdev(v) for k, v in gates.items()})
    if scales:
        out["branch_scale_mean"], out["branch_scale_min"], out["branch_scale_max"] = (
            statistics.fmean(scales), min(scales), max(scales))
    return out


@torch.no_grad()
def recalibrated_accuracy(model: nn.Module, train_data, val_data, batches: int = 20) -> float:
    """Test accuracy after re-estimating every BN's running statistics on ``batches`` training batches."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for i, (x, _) in enumerate(BatchLoader(train_data, 128, shuffle=True, seed=123)):
        if i >= batches:
            break
        model(x)
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in BatchLoader(val_data, 500))
    return 100.0 * correct / len(val_data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--canvas", type=int, default=40)
    p.add_argument("--train-limit", type=int, default=1024)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--only", default=None, help="comma-separated variant names (default all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = TrainConfig(backbone="resnet20", dataset="cluttered-fashion-mnist", dataset_kwargs={"canvas": args.canvas},
                       epochs=args.epochs, batch_size=args.batch_size, train_limit=args.train_limit,
                       val_limit=args.val_limit, device="cpu")
    train_data, val_data = load_dataset(base.dataset, dataset_kwargs=base.dataset_kwargs,
                                        train_limit=args.train_limit, val_limit=args.val_limit)
    x0, _ = next(iter(BatchLoader(train_data, 128)))
    table = variants(args.canvas)
    names = args.only.split(",") if args.only else list(table)
    OUT.mkdir(parents=True, exist_ok=True)
    results_path = OUT / "slow-start.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"variants": {}}
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "only")
    results["recipe"] = {**base.to_dict(), "seeds": seeds, "steps": args.epochs * (args.train_limit // args.batch_size),
                         "command": f"python benchmarks/slow_start.py {options}"}
    for name in names:
        factory = table[name]
        torch.manual_seed(0)
        entry = {"init": gate_statistics(factory(), x0), "runs": []}
        for seed in seeds:
            slug = name.replace(" ", "-").replace("(", "").replace(")", "").replace("+", "plus").replace("=", "")
            run_dir = OUT / "runs" / f"{slug}-s{seed}"
            t0 = time.perf_counter()
            result = train(replace(base, seed=seed, attention=slug), run_dir, progress=False, log=lambda *a: None,
                           task=VariantTask(factory))
            curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            run = {"seed": seed, "accuracy": result["accuracy"], "train_loss": [c["train_loss"] for c in curve],
                   "val_accuracy": [c["val_accuracy"] for c in curve], "wall_s": time.perf_counter() - t0}
            if "cbam (visattn)" == name:
                model = factory()
                model.load_state_dict(load_latest(run_dir / "checkpoints")[0]["model"])
                run["accuracy_bn_recalibrated"] = recalibrated_accuracy(model, train_data, val_data)
            entry["runs"].append(run)
            print(name, seed, run, flush=True)
        results["variants"][name] = entry
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)


def write_markdown(results: dict) -> None:
    r = results["recipe"]
    lines = [f"ResNet-20 on cluttered Fashion-MNIST ({r['dataset_kwargs']['canvas']}x{r['dataset_kwargs']['canvas']}, "
             f"4 pieces of 8x8), {r['train_limit']:,} training images x {r['epochs']} epochs = {r['steps']} steps of "
             f"batch {r['batch_size']}, lr {r['lr']} one-cycle, {r['val_limit']:,} test images, seeds "
             f"{r['seeds']}. `{r['command']}`", "",
             "| variant | channel gate at init (mean ± std) | spatial gate at init | branch scale at init "
             "|attn(r)|/|r| | train loss per epoch (seed mean) | test acc. % (per seed) |",
             "|---|---|---|---|---|---|"]
    for name, e in results["variants"].items():
        g = e["init"]
        ch = f"{g['channel_gate_mean']:.3f} ± {g['channel_gate_std']:.3f}" if "channel_gate_mean" in g else "-"
        sp = f"{g['spatial_gate_mean']:.3f} ± {g['spatial_gate_std']:.3f}" if "spatial_gate_mean" in g else "-"
        sc = (f"{g['branch_scale_mean']:.2f} ({g['branch_scale_min']:.2f}-{g['branch_scale_max']:.2f})"
              if "branch_scale_mean" in g else "1")
        if g.get("branch_scale_mean") != g.get("branch_scale_mean"):  # NaN: 0 / 0
            sc = "- (every branch starts at 0)"
        losses = [statistics.fmean(run["train_loss"][i] for run in e["runs"]) for i in range(len(e["runs"][0]
                                                                                                 ["train_loss"]))]
        accs = ", ".join(f"{run['accuracy']:.1f}" for run in e["runs"])
        recal = [run["accuracy_bn_recalibrated"] for run in e["runs"] if "accuracy_bn_recalibrated" in run]
        if recal:
            accs += " (BN statistics re-estimated: " + ", ".join(f"{a:.1f}" for a in recal) + ")"
        lines.append(f"| {name} | {ch} | {sp} | {sc} | {' → '.join(f'{v:.3f}' for v in losses)} | {accs} |")
    (OUT / "slow-start.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
