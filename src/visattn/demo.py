"""`visattn demo`, what `make demo` runs: every module on real data, then a comparison where attention matters.

1. A fixed random conv stem turns a batch of Fashion-MNIST test images into (B, 64, 14, 14)
   features; every registered module runs on them (parameters, time, how much it changes the map).
2. On cluttered Fashion-MNIST (the item somewhere on a 60x60 canvas among clutter, as the RAM and STN
   papers' cluttered MNIST), the small plain CNN is trained alone, with a spatial transformer in front
   (the STN paper's ST-CNN) and with spatial / channel+spatial modules, two seeds each; the leaderboard
   gives every network's difference to the plain one with its seed spread, and a verdict from a paired
   t-test only from three seeds on (`visattn compare` with a small budget; finished runs are reused).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .data import load_fashion_mnist
from .registry import create, info, list_modules
from .train.compare import Variant, compare, paired_test, parse_variants
from .train.config import TrainConfig

CHANNELS = 64
#: What the demo trains on cluttered Fashion-MNIST: the plain CNN, the ST-CNN, spatial and channel+spatial modules.
DEMO_VARIANTS = ("none", "stn", "cbam", "cbam:gate_init=0.9", "coord")  # CBAM with its paper's init and started near 1
#: Seeds per network: the demo's differences come with their seed spread.
DEMO_SEEDS = (0, 1)


def stem(channels: int = CHANNELS) -> nn.Module:
    """Conv stem: (B, 1, 28, 28) -> (B, channels, 14, 14)."""
    return nn.Sequential(
        nn.Conv2d(1, channels // 2, 3, padding=1), nn.BatchNorm2d(channels // 2), nn.ReLU(),
        nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
    )


def _inputs(key: str, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if info(key).role == "gate":
        return feats, nn.functional.avg_pool2d(feats, 2, ceil_mode=True)
    return (feats,)


def module_stats(key: str, feats: torch.Tensor) -> dict:
    """Run module ``key`` (eval mode) on ``feats``; its parameter count, time and effect on the map."""
    kwargs = {"feature_size": tuple(feats.shape[-2:])} if info(key).size_bound else {}
    module = create(key, feats.shape[1], **kwargs).eval()
    inputs = _inputs(key, feats)
    with torch.inference_mode():
        module(*inputs)  # warm-up
        start = time.perf_counter()
        out = module(*inputs)
        elapsed = time.perf_counter() - start
    change = (out - feats).norm() / feats.norm() if out.shape == feats.shape else float("nan")
    return {"key": key, "module": type(module).__name__, "role": info(key).role,
            "params": sum(p.numel() for p in module.parameters()), "ms": 1e3 * elapsed,
            "out_mean": out.mean().item(), "out_std": out.std().item(), "rel_change": float(change),
            "finite": bool(torch.isfinite(out).all())}


def module_table(feats: torch.Tensor) -> list[str]:
    """Print one row per registered module; return the keys that failed."""
    header = f"{'key':<20}{'module':<34}{'role':<10}{'params':>10}{'ms':>9}{'out mean':>10}{'out std':>9}" \
             f"{'|y-x|/|x|':>11}"
    print(header)
    print("-" * len(header))
    failed = []
    for key in list_modules():
        try:
            r = module_stats(key, feats)
        except Exception as err:  # the demo reports a broken module instead of stopping
            failed.append(key)
            print(f"{key:<20}FAILED: {type(err).__name__}: {err}")
            continue
        print(f"{r['key']:<20}{r['module']:<34}{r['role']:<10}{r['params']:>10,}{r['ms']:>9.2f}"
              f"{r['out_mean']:>10.3f}{r['out_std']:>9.3f}{r['rel_change']:>11.3f}")
    print(f"\n{len(list_modules()) - len(failed)} of {len(list_modules())} modules ran on real data"
          + (f"; failed: {', '.join(failed)}" if failed else "."))
    return failed


def default_jobs() -> int:
    """Training runs to do at once: two on a CPU-only machine with 2+ threads, else one.

    Two one-thread runs of ResNet-20 use two cores better than one two-thread run.
    """
    return 2 if not torch.cuda.is_available() and torch.get_num_threads() >= 2 else 1


def run_demo(*, data_dir: str | None = None, epochs: int = 3, train_limit: int = 10000, val_limit: int = 2000,
             out: str | Path = "runs/demo", jobs: int | None = None, seeds: Sequence[int] = DEMO_SEEDS) -> list[str]:
    """The demo: the module table on real features, then the cluttered comparison into ``out``.

    Args:
        data_dir: folder of the Fashion-MNIST idx files (default: searched, see :func:`load_fashion_mnist`).
        epochs: epochs per training run.
        train_limit: training images per run.
        val_limit: test images per run.
        out: where the runs and the leaderboard go (finished runs there are reused).
        jobs: training runs at once (default :func:`default_jobs`).
        seeds: seeds per network.

    Returns:
        The keys of the modules that failed on real data (empty when all ran).

    Raises:
        DatasetNotFoundError: Fashion-MNIST is not found (the message says how to get it).
    """
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    images, _ = load_fashion_mnist("test", data_dir)
    batch = images[:32].float().div(255).unsqueeze(1)
    with torch.no_grad():
        feats = stem().eval()(batch)
    print(f"{len(batch)} Fashion-MNIST test images -> conv stem -> features {tuple(feats.shape)}\n")
    failed = module_table(feats)

    base = TrainConfig(backbone="plaincnn", dataset="cluttered-fashion-mnist", data_dir=data_dir,
                       epochs=epochs, train_limit=train_limit, val_limit=val_limit)
    seeds = list(seeds)
    print(f"\nCluttered Fashion-MNIST (60x60 canvas, 4 clutter pieces of 8x8): the plain CNN against an STN in "
          f"front of it and {', '.join(DEMO_VARIANTS[2:])} in its "
          f"blocks; {epochs} epoch(s) on "
          f"{train_limit:,} training images, tested on {val_limit:,}, seeds {seeds} (the full runs: "
          "docs/studies/cluttered.md).\n")
    variants = [demo_variant(token) for token in DEMO_VARIANTS]
    rows = compare(base, variants, seeds, out, progress=False, jobs=jobs or default_jobs())
    print()
    print((Path(out) / "leaderboard.md").read_text())
    print("\n".join(verdict(rows)))
    return failed


def demo_variant(token: str) -> Variant:
    """``key`` or ``key:arg=value`` -> the comparison entry ``visattn compare --attention`` builds (stn: input)."""
    (variant,) = parse_variants(token)
    return variant


def verdict(rows: list[dict]) -> list[str]:
    """One line per network: its per-seed difference to the plain one and the verdict of :mod:`visattn.stats`.

    The verdict is a two-sided paired t-test of the per-seed differences at the 5% level (ahead, behind or
    level, with t and p); below three seeds there is none ("too few seeds for a verdict").
    """
    plain = next((r for r in rows if r.get("plain")), None)
    if plain is None:
        return []
    lines = [f"Against the plain network ({plain['accuracy_mean']:.2f}%):"]
    for r in rows:
        if r is plain:
            continue
        test = paired_test(r, plain)
        lines.append(f"  {r['label']}: " + (test.describe() if test else "no seed in common with the plain network"))
    return lines
