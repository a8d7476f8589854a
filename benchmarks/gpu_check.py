"""Everything this project checks on a GPU, in one command: ``make gpu-check`` (about 5-8 minutes on one GPU).

Without CUDA it prints one line and exits 0. With CUDA it runs, in order, and writes
``benchmarks/results/*-gpu.*``:

1. the ``gpu``-marked tests (``pytest -m gpu``): ``gpu-tests.txt`` (the pytest summary);
2. ``benchmarks/context.py --device cuda`` (non-local, PAM, OC, MHSA against their plain formulations, fp32,
   peak memory from ``torch.cuda.max_memory_allocated``): ``context-gpu.{json,md}``;
3. ``benchmarks/context_cc_psa.py --device cuda`` (criss-cross against mmcv's formulation, PSA against the
   scatter re-indexing, fp32): ``context-cc-psa-gpu.{json,md}``;
4. the precision sweep below (CC, PSA, non-local and PAM against the plain formulations in fp32, bf16 autocast
   and fp16 autocast; forward + backward; time and peak memory): ``precision-gpu.{json,md}``;
5. ``visattn bench`` over every key (C = 256, 56 x 56, batch 8, fp32 and bf16, forward + backward,
   peak memory): ``bench-gpu.{json,md}`` and ``bench-gpu-bf16.{json,md}``;
6. a ResNet-20 training step (batch 256, 1 x 28 x 28, SGD) for none / se / eca / cbam / coord / simam in fp32
   and with fp16 autocast + GradScaler: ``train-step-gpu.{json,md}``.

Each stage runs even if an earlier one failed; the exit status is 1 if any failed. Needs nothing from the
network: the training step uses random tensors shaped like Fashion-MNIST.

    python benchmarks/gpu_check.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NO_CUDA = "gpu-check: no CUDA device (torch.cuda.is_available() is False); nothing to run"


def _load(name: str):
    """Import a sibling benchmark script as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _run_script(args: list[str], renames: dict[str, str]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH"))
                                                      if p))
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)
    for old, new in renames.items():
        os.replace(RESULTS / old, RESULTS / new)


def stage_tests() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True)
    (RESULTS / "gpu-tests.txt").write_text(f"$ pytest -q -m gpu  ({torch.cuda.get_device_name()})\n\n"
                                           + proc.stdout[-20000:] + proc.stderr[-5000:])
    print(proc.stdout[-2000:])
    if proc.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"gpu tests failed (exit {proc.returncode}); see gpu-tests.txt")


def stage_context(rounds: int) -> None:
    _run_script(["benchmarks/context.py", "--device", "cuda", "--rounds", str(rounds), "--warmup", "3"],
                {f"context-cuda.{ext}": f"context-gpu.{ext}" for ext in ("json", "md")})


def stage_cc_psa(rounds: int) -> None:
    _run_script(["benchmarks/context_cc_psa.py", "--device", "cuda", "--repeats", str(rounds), "--warmup", "3"],
                {f"context-cc-psa-cuda.{ext}": f"context-cc-psa-gpu.{ext}" for ext in ("json", "md")})


def _timed_peak(run, rounds: int) -> dict:
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    s = sorted(samples)
    return {"median_ms": 1e3 * statistics.median(s), "p10_ms": 1e3 * s[len(s) // 10],
            "p90_ms": 1e3 * s[(9 * len(s)) // 10], "peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20}


def stage_precision(rounds: int) -> None:
    """CC, PSA, non-local and PAM modules against the plain formulations in fp32, bf16 and fp16 autocast."""
    cc_psa, context = _load("context_cc_psa"), _load("context")
    cases = []
    for case in ("cc", "psa"):
        for impl in ("visattn", cc_psa.BASELINE[case]):
            cases.append((case, impl, lambda c=case, i=impl: cc_psa.build(c, "module", i, "cuda")))
    for case in ("nonlocal", "pam"):
        for impl in ("subject", "baseline"):
            cases.append((case, "visattn" if impl == "subject" else "plain",
                          lambda c=case, i=impl: context.build(c, i, "cuda")))
    rows = []
    for dtype in ("float32", "bfloat16", "float16"):
        for case, impl, make in cases:
            module, inputs = make()
            x = inputs[0].detach().requires_grad_()
            upstream = torch.randn_like(module(x).float())

            def step(module=module, x=x, upstream=upstream, dtype=dtype):
                module.train()
                x.grad = None
                for p in module.parameters():
                    p.grad = None
                with torch.autocast("cuda", dtype=getattr(torch, dtype), enabled=dtype != "float32"):
                    out = module(x)
                out.float().backward(upstream)

            result = _timed_peak(step, rounds)
            rows.append({"case": case, "impl": impl, "dtype": dtype, **result})
            print(f"precision {case:8s} {impl:8s} {dtype:9s} {result['median_ms']:8.2f} ms "
                  f"{result['peak_mib']:8.1f} MiB", flush=True)
            del module, inputs, x, upstream
            torch.cuda.empty_cache()
    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "rounds": rounds, "step": "forward+backward (train mode, input gradient included)",
           "sizes": {"cc": list(cc_psa.CC_SIZE), "psa": list(cc_psa.PSA_SIZE), "nonlocal": [96, 96], "pam": [96, 96]},
           "channels": 512, "batch": 1}
    (RESULTS / "precision-gpu.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    lines = [f"# Context modules by precision on {env['gpu']}", "",
             f"torch {env['torch']}, CUDA {env['cuda']}; B = 1, C = 512; forward + backward; median (p10-p90) of "
             f"{rounds} runs; peak memory from torch.cuda.max_memory_allocated beyond the step's start. "
             "Generated by `benchmarks/gpu_check.py`.", "",
             "| case | implementation | dtype | ms | p10-p90 ms | peak MiB | time ratio | memory ratio |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        base = next(b for b in rows if b["case"] == r["case"] and b["dtype"] == r["dtype"] and b["impl"] != "visattn")
        lines.append(f"| {r['case']} | {r['impl']} | {r['dtype']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}-"
                     f"{r['p90_ms']:.2f} | {r['peak_mib']:.1f} | {r['median_ms'] / base['median_ms']:.2f} | "
                     f"{r['peak_mib'] / max(base['peak_mib'], 1e-9):.2f} |")
    (RESULTS / "precision-gpu.md").write_text("\n".join(lines) + "\n")


def stage_bench(quick: bool) -> None:
    import visattn
    from visattn.bench import BenchConfig, run_bench
    from visattn.bench.report import write_json, write_markdown

    for dtype, stem in (("float32", "bench-gpu"), ("bfloat16", "bench-gpu-bf16")):
        cfg = BenchConfig(visattn.list_modules(), channels=256, sizes=[(56, 56)], batch=8, device="cuda",
                          dtype=dtype, backward=True, repeat=10 if quick else 30, warmup=5, memory=True,
                          max_time=2.0)
        report = run_bench(cfg)
        write_json(report, str(RESULTS / f"{stem}.json"))
        write_markdown(report, str(RESULTS / f"{stem}.md"))


def stage_train_step(rounds: int) -> None:
    from visattn.backbones import create

    keys = ["none", "se", "eca", "cbam", "coord", "simam"]
    rows = []
    for amp in (False, True):
        steps = {}
        for key in keys:
            torch.manual_seed(0)
            model = create("resnet20", attention=None if key == "none" else key, in_chans=1, num_classes=10).cuda()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda", enabled=amp)
            x = torch.randn(256, 1, 28, 28, device="cuda")
            y = torch.randint(0, 10, (256,), device="cuda")

            def step(model=model, opt=opt, scaler=scaler, x=x, y=y, amp=amp):
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            steps[key] = step
            for _ in range(5):
                step()
        torch.cuda.synchronize()
        times = {k: [] for k in keys}
        for r in range(rounds):  # interleaved: every model once per round
            for key in (keys if r % 2 == 0 else keys[::-1]):
                start = time.perf_counter()
                steps[key]()
                torch.cuda.synchronize()
                times[key].append(time.perf_counter() - start)
        base = statistics.median(times["none"])
        for key in keys:
            med = statistics.median(times[key])
            rows.append({"attention": key, "amp": amp, "median_ms": 1e3 * med, "ratio_to_none": med / base,
                         "images_per_s": 256 / med})
    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "batch": 256, "rounds": rounds}
    (RESULTS / "train-step-gpu.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [f"ResNet-20 training step on {env['gpu']} (batch 256, 1x28x28, torch {env['torch']}), median of "
             f"{rounds} interleaved rounds. Generated by `benchmarks/gpu_check.py`.", "",
             "| attention | precision | median ms | ratio to none | images/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['attention']} | {'fp16 autocast' if r['amp'] else 'fp32'} | {r['median_ms']:.2f} | "
              f"{r['ratio_to_none']:.3f} | {r['images_per_s']:,.0f} |" for r in rows]
    (RESULTS / "train-step-gpu.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about half the time)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    rounds = 10 if args.quick else 30
    RESULTS.mkdir(parents=True, exist_ok=True)
    stages = [("gpu tests", stage_tests), ("context", lambda: stage_context(rounds)),
              ("cc / psa", lambda: stage_cc_psa(rounds)), ("precision", lambda: stage_precision(rounds)),
              ("bench", lambda: stage_bench(args.quick)), ("train step", lambda: stage_train_step(rounds))]
    failed = []
    for name, stage in stages:
        start = time.perf_counter()
        print(f"== gpu-check: {name}", flush=True)
        try:
            stage()
        except Exception:  # noqa: BLE001 - report and go on: one broken stage should not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"== gpu-check: {name} took {time.perf_counter() - start:.0f} s", flush=True)
    print("gpu-check: " + (f"FAILED: {', '.join(failed)}" if failed else "all stages passed")
          + f"; results in {RESULTS.relative_to(ROOT)}/*-gpu.*")
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "--query-gpu=name,memory.used,memory.total", "--format=csv"], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
