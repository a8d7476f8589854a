"""The segmentation heads' attention at a segmentation feature size, against the plain quadratic formulation.

Run by hand (not part of the tests):

    OMP_NUM_THREADS=1 python benchmarks/seg_heads.py [--repeats N] [--only nonlocal,pam] [--size 64,128]

A 512 x 1024 crop at output stride 8 gives 64 x 128 features; the heads' context modules run there at
C = 512, batch 1, configured as the heads configure them (:mod:`visattn.segmentation.heads`): NLHead's
non-local block (embedded Gaussian, C/2 inner channels, energies scaled by d^-1/2), DAHead's PAM (Q, K at
C/8), OCHead's base-OC (key = value = C/2), and, with no quadratic map to compare against, CCHead's
recurrent criss-cross attention (R = 2) and EMAHead's EMA unit (64 bases, 3 steps). MHSA (8 maps of
8192 x 8192) is left out of the plain runs unless ``--only mhsa`` asks for it: its plain backward needs
several GiB.

Each visattn module runs as the head runs it (``memory_efficient=True``: SDPA or the query-blocked kernel);
the plain formulation is the official codes' (explicit ``HW x HW`` softmax map, bmm), written in
``benchmarks/context.py`` with the module's own weights; the non-local one is mmcv's ``NonLocal2d`` with its
in-place scaling of the map (:class:`PlainScaledNonLocal`). Residual scales and zero-initialised layers are set
non-zero first so that the attention path is in the backward. Before timing, both are run once on the same
input and the largest absolute difference of their outputs is recorded.

Forward + backward (train mode, gradients to parameters and input): median of ``--repeats`` after one
warm-up. Peak memory: the growth of the resident set during one step after a warm-up step, in a fresh
process (``VmHWM`` reset through ``/proc/self/clear_refs``), as ``benchmarks/context.py`` measures it.

Writes ``benchmarks/results/seg-heads-cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import visattn

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_context_bench", HERE / "context.py")
context = importlib.util.module_from_spec(_spec)
sys.modules["_context_bench"] = context  # its dataclasses look their module up there
_spec.loader.exec_module(context)

CHANNELS = 512


class PlainScaledNonLocal(nn.Module):
    """NLHead's non-local block (embedded Gaussian, energies / d^1/2) as mmcv's ``NonLocal2d`` computes it.

    The official formulation, line for line: ``pairwise_weight = torch.matmul(theta_x, phi_x)``, then
    ``pairwise_weight /= d ** 0.5`` *in place* (so the scaling costs no second N x N map), ``softmax(dim=-1)``,
    ``torch.matmul(pairwise_weight, g_x)``, and ``x + conv_out(y)``.
    """

    def __init__(self, ref):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, _, h, w) = self.ref, x.shape
        g_x = r.g(x).view(b, r.g.out_channels, -1).permute(0, 2, 1)  # [B, N, Ci]
        theta_x = r.theta(x).view(b, r.theta.out_channels, -1).permute(0, 2, 1)  # [B, N, Ci]
        phi_x = r.phi(x).view(b, r.phi.out_channels, -1)  # [B, Ci, N]
        pairwise_weight = torch.matmul(theta_x, phi_x)  # [B, N, N]
        pairwise_weight /= theta_x.shape[-1] ** 0.5  # in place, as mmcv's use_scale
        pairwise_weight = pairwise_weight.softmax(dim=-1)
        y = torch.matmul(pairwise_weight, g_x)  # [B, N, Ci]
        y = y.permute(0, 2, 1).contiguous().reshape(b, -1, h, w)
        return x + r.norm(r.w_z(y))


def _live(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.fill_(0.5)
    return m


#: name -> (subject builder, plain builder or None)
CASES = {
    "nonlocal": (lambda: _live(visattn.create("nonlocal", CHANNELS, scaled=True)), PlainScaledNonLocal),
    "pam": (lambda: _live(visattn.create("pam", CHANNELS)), context.PlainPAM),
    "oc": (lambda: _live(visattn.create("oc", CHANNELS, out_channels=CHANNELS)), context.PlainOC),
    "mhsa": (lambda: visattn.create("mhsa", CHANNELS), context.PlainMHSA),
    "cc": (lambda: _live(visattn.create("cc", CHANNELS, recurrence=2)), None),
    "ema": (lambda: visattn.create("ema", CHANNELS), None),
}
DEFAULT = ("nonlocal", "pam", "oc", "cc", "ema")


def build(name: str, impl: str, size: tuple[int, int]):
    torch.manual_seed(0)
    subject_fn, plain_fn = CASES[name]
    subject = subject_fn()
    module = subject if impl == "visattn" else plain_fn(subject)
    x = torch.randn(1, CHANNELS, *size, generator=torch.Generator().manual_seed(1))
    return module, x


def forward_backward(module: nn.Module, x: torch.Tensor):
    leaf = x.detach().requires_grad_()
    upstream = []

    def run():
        module.train()
        for t in [leaf, *module.parameters()]:
            t.grad = None
        out = module(leaf)
        if not upstream:
            upstream.append(torch.randn(out.shape, generator=torch.Generator().manual_seed(2)))
        out.backward(upstream[0])

    return run


def memory_child(request: dict) -> None:
    torch.set_num_threads(int(request["threads"]))
    torch.set_flush_denormal(True)
    module, x = build(request["case"], request["impl"], tuple(request["size"]))
    run = forward_backward(module, x)
    run()
    gc.collect()
    context._trim()
    base = context._status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run()
    print(json.dumps({"peak": max(0, context._status_bytes("VmHWM") - base)}))


def cpu_peak(name: str, impl: str, size) -> int | None:
    request = {"case": name, "impl": impl, "size": list(size), "threads": torch.get_num_threads()}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(request)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak"]


def measure(names, size, repeats: int) -> list[dict]:
    rows = []
    for name in names:
        row = {"case": name, "size": list(size)}
        impls = ["visattn"] + (["plain"] if CASES[name][1] is not None else [])
        if len(impls) == 2:
            with torch.no_grad():
                a, x = build(name, "visattn", size)
                b, _ = build(name, "plain", size)
                a.eval(), b.eval()
                row["max_abs_diff"] = float((a(x) - b(x)).abs().max())
        for impl in impls:
            module, x = build(name, impl, size)
            run = forward_backward(module, x)
            run()  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            row[f"{impl}_ms"] = 1e3 * statistics.median(times)
            del module, x, run
            gc.collect()
            row[f"{impl}_peak_bytes"] = cpu_peak(name, impl, size)
            print(name, impl, f"{row[f'{impl}_ms']:.0f} ms", row[f"{impl}_peak_bytes"], flush=True)
        if "plain_ms" in row:
            row["time_ratio"] = row["visattn_ms"] / row["plain_ms"]
            if row["visattn_peak_bytes"] and row["plain_peak_bytes"]:
                row["memory_ratio"] = row["visattn_peak_bytes"] / row["plain_peak_bytes"]
        rows.append(row)
    return rows


def markdown(rows, size, repeats, env) -> str:
    def mib(b):
        return f"{b / 2**20:,.0f}" if b else "-"

    lines = ["# Segmentation heads' attention against the plain formulation (CPU)", "",
             f"C = {CHANNELS}, batch 1, {size[0]} x {size[1]} features (a {8 * size[0]} x {8 * size[1]} crop at "
             f"output stride 8); forward + backward, median of {repeats} after one warm-up; peak = resident-set "
             f"growth during one step in a fresh process. torch {env['torch']}, {env['threads']} thread(s), "
             f"{env['cpu']}. {env['when']}.", "",
             "| head's module | visattn ms | plain ms | time ratio | visattn peak MiB | plain peak MiB | "
             "memory ratio | max abs diff |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['visattn_ms']:,.0f} | {r.get('plain_ms', float('nan')):,.0f} | "
                     f"{r.get('time_ratio', float('nan')):.2f} | {mib(r['visattn_peak_bytes'])} | "
                     f"{mib(r.get('plain_peak_bytes'))} | {r.get('memory_ratio', float('nan')):.3f} | "
                     f"{r.get('max_abs_diff', float('nan')):.1e} |")
    lines += ["", "Target (issue 14): non-local and PAM at <= 0.15x the plain formulation's peak memory. cc and ema "
              "have no quadratic map: their rows give their own cost."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated cases (default: " + ",".join(DEFAULT) + ")")
    parser.add_argument("--size", default="64,128", help="feature H,W (default 64,128)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return
    torch.set_flush_denormal(True)
    size = tuple(int(v) for v in args.size.split(","))
    names = [n for n in args.only.split(",") if n] or list(DEFAULT)
    rows = measure(names, size, args.repeats)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or "cpu",
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = HERE / "results" / "seg-heads-cpu"
    out.with_suffix(".json").write_text(json.dumps({"env": env, "size": size, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, size, args.repeats, env))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
