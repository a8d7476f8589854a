"""Is data loading a bottleneck? visattn's batch loader against a ResNet-20 training step (run by hand).

Both are measured in one process with the same thread count, on the full Fashion-MNIST training set:
the loader's images/s with random crops + flips (the CIFAR recipe) and with flips alone (the
Fashion-MNIST default), and a plain ResNet-20's training images/s; the table gives the share of
a training epoch that loading takes.

    python benchmarks/loader.py --threads 2

``--cluttered`` measures cluttered Fashion-MNIST instead: every batch is rendered when it is asked for
(60x60 canvas, 4 clutter pieces; plain and with the STN paper's rotation + scale), against training
steps of the networks that train on it (the plain CNN, with an STN in front, and ResNet-20):

    python benchmarks/loader.py --cluttered --threads 1 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from visattn.backbones import create
from visattn.data.loader import BatchLoader, load_dataset

RESULTS = Path(__file__).parent / "results"


def loader_rate(data, pad: int, batch: int, epochs: int) -> float:
    """Median images/s of full passes over ``data`` with augmentation (crop ``pad``, flips)."""
    loader = BatchLoader(data, batch, shuffle=True, augment=True, pad=pad, flip=True, drop_last=True)
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for _, y in loader:
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def train_rate(batch: int, steps: int, backbone: str = "resnet20", size: int = 28,
               transform: str | None = None) -> float:
    """Median images/s of training steps of ``backbone`` (SGD, 1 x size x size input)."""
    torch.manual_seed(0)
    model = create(backbone, in_chans=1, num_classes=10, input_size=size, transform=transform).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5, help="loader passes over the training set")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cluttered", action="store_true", help="cluttered Fashion-MNIST (rendered per batch)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    if args.cluttered:
        cluttered(args)
        return
    data, _ = load_dataset("fashion-mnist", args.data_dir)
    train = train_rate(args.batch, args.steps)
    rows = []
    for label, pad in (("flips (Fashion-MNIST default)", 0), ("4-pixel crops + flips", 4)):
        rate = loader_rate(data, pad, args.batch, args.epochs)
        rows.append({"augmentation": label, "pad": pad, "loader_images_per_s": rate,
                     "train_images_per_s": train, "loading_share": train / (rate + train)})
    env = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": args.batch, "images": len(data)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loader-cpu.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [f"Batch loader against a ResNet-20 training step on CPU ({env['threads']} threads, batch {args.batch}, "
             f"{env['images']:,} Fashion-MNIST training images, torch {env['torch']}); medians of "
             f"{args.epochs} loader passes and {args.steps} training steps.", "",
             "| augmentation | loader images/s | ResNet-20 training images/s | loading share of an epoch |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['augmentation']} | {r['loader_images_per_s']:,.0f} | {r['train_images_per_s']:,.0f} | "
                     f"{100 * r['loading_share']:.2f}% |")
    (RESULTS / "loader-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cluttered(args: argparse.Namespace) -> None:
    """Rendering rate of cluttered batches against the training rates of the networks that use them."""
    trains = {name: train_rate(args.batch, args.steps, backbone, 60, transform)
              for name, backbone, transform in (("plain CNN", "plaincnn", None), ("ST-CNN", "plaincnn", "stn"),
                                                ("ResNet-20", "resnet20", None))}
    rows = []
    for label, options in (("60x60, 4 pieces of 8x8", {}), ("60x60, 4 pieces, RTS", {"rts": True})):
        data, _ = load_dataset("cluttered-fashion-mnist", args.data_dir, dataset_kwargs=options)
        rate = loader_rate(data, 0, args.batch, args.epochs)
        for net, train in trains.items():
            rows.append({"data": label, "options": options, "network": net, "loader_images_per_s": rate,
                         "train_images_per_s": train, "loading_share": train / (rate + train)})
    env = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": args.batch, "images": len(data),
           "command": f"python benchmarks/loader.py --cluttered --threads {args.threads} --epochs {args.epochs}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loader-cluttered-cpu.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [f"Cluttered Fashion-MNIST rendered per batch (flips, no crops) against training steps at 60x60 on CPU "
             f"({env['threads']} thread(s), batch {args.batch}, {env['images']:,} training images, torch "
             f"{env['torch']}); medians of {args.epochs} loader pass(es) and {args.steps} training steps. "
             f"`{env['command']}`", "",
             "| data | loader images/s | network | training images/s | loading share of an epoch |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['loader_images_per_s']:,.0f} | {r['network']} | "
                     f"{r['train_images_per_s']:,.0f} | {100 * r['loading_share']:.2f}% |")
    (RESULTS / "loader-cluttered-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
