"""What an attention module adds to a CPU training step of ResNet-20 (run by hand, not in CI).

Every model is timed in the same process on the same batch, interleaved round by round so that
machine noise hits all of them alike; the table gives the median step time and the ratio to the
plain ResNet-20. Fashion-MNIST-shaped input (1 x 28 x 28), SGD with momentum, flush-denormal on.

    python benchmarks/train_step.py                      # none, se, eca, cbam, coord, simam
    python benchmarks/train_step.py --attention none,se --rounds 30 --threads 2
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
from visattn.bench.allocator import allocator_state, pin_allocator

RESULTS = Path(__file__).parent / "results"


def step_fn(attention: str | None, batch: int):
    torch.manual_seed(0)
    model = create("resnet20", attention=attention, in_chans=1, num_classes=10).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="none,se,eca,cbam,coord,simam")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    pin_allocator()  # freed temporaries are reused, not faulted in afresh each step (stable timings)
    torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.attention.split(",")]
    steps = {k: step_fn(None if k == "none" else k, args.batch) for k in keys}
    for step, _ in steps.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.rounds):
        for k, (step, _) in steps.items():
            t0 = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times[keys[0]])
    rows = []
    for k in keys:
        q = statistics.quantiles(times[k], n=10, method="inclusive")
        med = statistics.median(times[k])
        rows.append({"attention": k, "params": steps[k][1], "median_ms": 1e3 * med, "p10_ms": 1e3 * q[0],
                     "p90_ms": 1e3 * q[-1], "ratio_to_first": med / base, "images_per_s": args.batch / med})
    env = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "batch": args.batch, "rounds": args.rounds,
           "allocator": allocator_state()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train-step-cpu.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [f"ResNet-20 training step on CPU ({env['threads']} threads, batch {args.batch}, 1x28x28, "
             f"torch {env['torch']}), median of {args.rounds} interleaved rounds.", "",
             f"| attention | params | median ms | p10-p90 ms | ratio to {keys[0]} | images/s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attention']} | {r['params']:,} | {r['median_ms']:.1f} | "
                     f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f} | {r['ratio_to_first']:.3f} | {r['images_per_s']:,.0f} |")
    (RESULTS / "train-step-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
