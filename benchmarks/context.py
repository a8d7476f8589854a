"""The quadratic context modules against their plain formulations: same weights, same inputs, one run.

Run by hand (not part of the tests):

    OMP_NUM_THREADS=2 python benchmarks/context.py [--device cpu|cuda|all] [--repeats N] [--warmup N] [--only a,b]

Each entry of :data:`CASES` pairs a visattn module (``subject``, default settings, ``memory_efficient=True``)
with a plain formulation written in this file (``baseline``), which uses the subject's own parameters and
writes the ``HW x HW`` attention map out, as the official code does:

- ``nonlocal`` at 96 x 96: embedded Gaussian, C/2 = 256 inner channels; visattn uses fused SDPA.
- ``pam`` at 96 x 96: Q, K at C/8 = 64, V at C = 512; visattn uses the query-blocked exact kernel with a
  recomputing backward (``visattn.ops.blocked_attention``).
- ``pam_sdpa`` at 96 x 96: the same PAM through ``F.scaled_dot_product_attention(q, k, v, scale=1)`` with the
  unequal widths, to record why visattn does not use it on the CPU (no fused kernel for unequal widths: it
  takes SDPA's math path, which builds the map).
- ``oc`` at 96 x 96: base-OC, key = value = C/2; visattn uses SDPA.
- ``mhsa`` at 48 x 48: 8 heads of 64; visattn uses SDPA. (At 96 x 96 the plain formulation holds 8 maps of
  85 M entries, several GiB.)

Targets (``nonlocal``, ``pam``): peak memory <= 0.15x and time <= 1.0x the plain formulation.

Times: median, p10 and p90 of ``--repeats`` runs after ``--warmup`` runs; forward in eval mode under
``torch.inference_mode``; forward + backward in train mode, gradients to the parameters and the input.
Peak memory: on CUDA, ``max_memory_allocated`` during one step beyond what was allocated before it. On the
CPU, the growth of the resident set during one step after a warm-up step, in a fresh child process: glibc's
mmap threshold is pinned at 64 KiB (so freed buffers leave the resident set), ``malloc_trim`` runs before the
step and the high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` (where that file cannot be
written, the child measures ``ru_maxrss`` growth over the first step instead, without a warm-up).

Writes ``benchmarks/results/context-<device>.json`` and ``.md``.

On a shared machine whose cores are oversubscribed, measure with ``OMP_NUM_THREADS=1``: SDPA's fused CPU
backward synchronises its threads often and was measured 10-40x slower with 2 threads on 2 busy cores
(1 thread: on par with or faster than the plain formulation), which says nothing about the kernels.

To add a module, append a :class:`Case` to :data:`CASES`: a ``subject`` builder (channels -> module) and a
``baseline`` builder (subject -> module computing the same function the plain way with the subject's weights).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visattn.modules.danet import PositionAttention
from visattn.modules.mhsa import MultiHeadSelfAttention
from visattn.modules.nonlocal_block import NonLocalBlock
from visattn.modules.ocnet import ObjectContext

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, CHANNELS = 1, 512


# ------------------------------------------------------------------ the plain formulations


class PlainNonLocal(nn.Module):
    """Embedded-Gaussian non-local block with the explicit softmax(theta^T phi) map (the subject's weights)."""

    def __init__(self, ref: NonLocalBlock):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, _, h, w) = self.ref, x.shape
        theta = r.theta(x).flatten(2)  # [B, Ci, N]
        phi = r.phi(r.pool(x)).flatten(2)
        g = r.g(r.pool(x)).flatten(2)
        f = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # [B, N, N]
        y = torch.bmm(g, f.transpose(1, 2)).reshape(b, -1, h, w)
        return r.norm(r.w_z(y)) + x


class PlainPAM(nn.Module):
    """The official PAM_Module forward: bmm, softmax, bmm (the subject's weights)."""

    def __init__(self, ref: PositionAttention):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, c, h, w) = self.ref, x.shape
        q = r.query_conv(x).flatten(2).permute(0, 2, 1)  # [B, N, C/8]
        k = r.key_conv(x).flatten(2)  # [B, C/8, N]
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # [B, N, N]
        v = r.value_conv(x).flatten(2)  # [B, C, N]
        out = torch.bmm(v, attn.permute(0, 2, 1)).reshape(b, c, h, w)
        return r.alpha * out + x


class SdpaPAM(nn.Module):
    """PAM with ``F.scaled_dot_product_attention`` on unequal q/k and v widths (scale 1)."""

    def __init__(self, ref: PositionAttention):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, c, h, w) = self.ref, x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2) for conv in (r.query_conv, r.key_conv, r.value_conv))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # [B, N, C]
        return r.alpha * out.transpose(1, 2).reshape(b, c, h, w) + x


class PlainOC(nn.Module):
    """The official base-OC forward: explicit sim map, context, concat, fuse (the subject's weights)."""

    def __init__(self, ref: ObjectContext):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, _, h, w) = self.ref, x.shape
        sa = r.context
        key = sa.f_key(x).flatten(2)  # [B, Ck, N]
        query = key.permute(0, 2, 1)  # shared transform
        value = sa.f_value(x).flatten(2).permute(0, 2, 1)  # [B, N, Cv]
        sim = torch.softmax(torch.matmul(query, key) * sa.key_channels ** -0.5, dim=-1)  # [B, N, N]
        ctx = torch.matmul(sim, value).permute(0, 2, 1).reshape(b, -1, h, w)
        return r.dropout(r.fuse(torch.cat((sa.W(ctx), x), dim=1)))


class PlainMHSA(nn.Module):
    """Multi-head self-attention with the explicit per-head softmax(QK^T / sqrt(d)) maps (the subject's weights)."""

    def __init__(self, ref: MultiHeadSelfAttention):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, c, h, w) = self.ref, x.shape
        t = x.flatten(2).transpose(1, 2)  # [B, N, C]
        qkv = F.linear(t, r.in_proj_weight, r.in_proj_bias).reshape(b, h * w, 3, r.num_heads, r.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, heads, N, d] each
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / r.head_dim ** 0.5, dim=-1)  # [B, h, N, N]
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, h * w, c)
        return r.out_proj(out).transpose(1, 2).reshape(b, c, h, w)


def _with_residual_scale(m: nn.Module) -> nn.Module:
    """Non-zero learnable residual scales / last layers, so the attention path matters in the backward."""
    with torch.no_grad():
        for name in ("alpha", "beta"):
            if hasattr(m, name):
                getattr(m, name).fill_(0.5)
        norm = getattr(m, "norm", None)
        if isinstance(norm, nn.BatchNorm2d):
            norm.weight.fill_(1.0)
        context = getattr(m, "context", None)
        if context is not None and hasattr(context, "W"):
            nn.init.normal_(context.W.weight, std=0.02)
    return m


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """One comparison: ``subject(channels)`` against ``baseline(subject)`` on one input size."""

    name: str
    size: tuple[int, int]
    subject: Callable[[int], nn.Module]
    baseline: Callable[[nn.Module], nn.Module]
    subject_label: str = "visattn"
    baseline_label: str = "plain"
    target_time: float | None = None
    target_memory: float | None = None
    note: str = ""


CASES: list[Case] = [
    Case("nonlocal", (96, 96), lambda c: _with_residual_scale(NonLocalBlock(c)), PlainNonLocal,
         target_time=1.0, target_memory=0.15, note="embedded Gaussian; visattn: SDPA"),
    Case("pam", (96, 96), lambda c: _with_residual_scale(PositionAttention(c)), PlainPAM,
         target_time=1.0, target_memory=0.15, note="visattn: query-blocked kernel, recomputing backward"),
    Case("pam_sdpa", (96, 96), lambda c: _with_residual_scale(PositionAttention(c)), SdpaPAM,
         subject_label="visattn", baseline_label="sdpa-unequal",
         note="PAM through SDPA with unequal widths (what visattn avoids on the CPU)"),
    Case("oc", (96, 96), lambda c: _with_residual_scale(ObjectContext(c)), PlainOC, note="base-OC; visattn: SDPA"),
    Case("mhsa", (48, 48), lambda c: MultiHeadSelfAttention(c), PlainMHSA, note="8 heads; visattn: SDPA"),
]


def _case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def _randn(*shape, device, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def build(name: str, impl: str, device: str) -> tuple[nn.Module, list[torch.Tensor]]:
    """(module, inputs) for one measurement: the same weights and values for subject and baseline."""
    case = _case(name)
    torch.manual_seed(0)
    subject = case.subject(CHANNELS)
    module = subject if impl == "subject" else case.baseline(subject)
    return module.to(device), [_randn(BATCH, CHANNELS, *case.size, device=device, seed=1)]


def steps(module: nn.Module, inputs: list[torch.Tensor]):
    """forward (eval, inference mode) and forward + backward (train, gradients to parameters and input)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    params = list(module.parameters())
    upstream = []

    def forward():
        module.eval()
        with torch.inference_mode():
            return module(*inputs)

    def forward_backward():
        module.train()
        for t in leaves + params:
            t.grad = None
        out = module(*leaves)
        if not upstream:
            upstream.append(_randn(*out.shape, device=out.device, seed=2))
        out.backward(upstream[0])

    return forward, forward_backward


# ------------------------------------------------------------------ measuring


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _quantile(samples, q):
    s = sorted(samples)
    pos = q * (len(s) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def timings(run, device, repeats, warmup):
    for _ in range(warmup):
        run()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "p10_s": _quantile(samples, 0.1),
            "p90_s": _quantile(samples, 0.9), "samples_s": samples}


def _status_bytes(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE).group(1)) * 1024


def _trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _memory_child(request):
    """In a fresh process: resident-set growth during one step (see the module docstring)."""
    torch.set_num_threads(int(request["threads"]))
    torch.set_flush_denormal(True)
    module, inputs = build(request["case"], request["impl"], "cpu")
    forward, forward_backward = steps(module, inputs)
    run = forward if request["step"] == "forward" else forward_backward
    try:
        run()  # warm-up: one-time allocations (thread pools, MKL buffers, parameter gradients' first use)
        gc.collect()
        _trim()
        base = _status_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        run()
        peak, method = _status_bytes("VmHWM") - base, "VmHWM"
    except OSError:  # no /proc/self/clear_refs: growth of the lifetime maximum over a first, cold step
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run()
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, "ru_maxrss"
    print(json.dumps({"peak": max(0, peak), "method": method}))


def cpu_peak(name, impl, step):
    request = {"case": name, "impl": impl, "step": step, "threads": torch.get_num_threads()}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(request)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None, None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["peak"], result["method"]


def cuda_peak(run):
    run()
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return max(0, torch.cuda.max_memory_allocated() - base)


def max_abs_diff(name, device):
    """Max |subject - baseline| of the forward outputs on the shared inputs (float32)."""
    outs = []
    for impl in ("subject", "baseline"):
        module, inputs = build(name, impl, device)
        outs.append(steps(module, inputs)[0]().float())
    return (outs[0] - outs[1]).abs().max().item()


def measure(device, repeats, warmup, names, memory=True):
    rows = []
    for case in CASES:
        if names and case.name not in names:
            continue
        entry = {"case": case.name, "size": list(case.size), "note": case.note, "subject_label": case.subject_label,
                 "baseline_label": case.baseline_label, "target_time": case.target_time,
                 "target_memory": case.target_memory, "max_abs_diff": max_abs_diff(case.name, device)}
        for impl in ("subject", "baseline"):
            module, inputs = build(case.name, impl, device)
            forward, forward_backward = steps(module, inputs)
            for step, run in (("forward", forward), ("forward_backward", forward_backward)):
                result = timings(run, device, repeats, warmup)
                if not memory:
                    result["peak_bytes"], result["peak_method"] = None, None
                elif device == "cuda":
                    result["peak_bytes"], result["peak_method"] = cuda_peak(run), "max_memory_allocated"
                else:
                    result["peak_bytes"], result["peak_method"] = cpu_peak(case.name, impl, step)
                entry.setdefault(impl, {})[step] = result
                peak = result["peak_bytes"]
                label = case.subject_label if impl == "subject" else case.baseline_label
                print(f"{device} {case.name:9s} {label:13s} {step:16s} {result['median_s'] * 1e3:9.1f} ms "
                      f"(p10 {result['p10_s'] * 1e3:.1f}, p90 {result['p90_s'] * 1e3:.1f})  peak "
                      f"{'-' if peak is None else f'{peak / 2**20:8.1f} MiB'}", flush=True)
            del module, inputs, forward, forward_backward
            gc.collect()
        for step in ("forward", "forward_backward"):
            ours, base = entry["subject"][step], entry["baseline"][step]
            entry.setdefault("time_ratio", {})[step] = ours["median_s"] / base["median_s"]
            if ours["peak_bytes"] is not None and base["peak_bytes"]:
                entry.setdefault("memory_ratio", {})[step] = ours["peak_bytes"] / base["peak_bytes"]
        rows.append(entry)
    return rows


def environment(device):
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": platform.machine(), "batch": BATCH, "channels": CHANNELS, "dtype": "float32"}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
        env["load_average"] = os.getloadavg()
    except (OSError, AttributeError):
        pass
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def markdown(device, env, rows, repeats, warmup):
    def mib(b):
        return "-" if b is None else f"{b / 2**20:.0f}"

    def ms(r):
        return f"{r['median_s'] * 1e3:.0f} ({r['p10_s'] * 1e3:.0f}-{r['p90_s'] * 1e3:.0f})"

    lines = [f"# Context modules against their plain formulations ({device})", "",
             f"torch {env['torch']}, {env['threads']} threads, {env.get('gpu', env.get('cpu', ''))}; B = {BATCH}, "
             f"C = {CHANNELS}, float32; times in ms: median (p10-p90) of {repeats} runs after {warmup} warm-up; "
             f"load average at the end {tuple(round(x, 1) for x in env.get('load_average', ()))}.", "",
             "Ratio = visattn / baseline (below 1: visattn is faster / smaller). Generated by "
             "`benchmarks/context.py`.", "",
             "| case | size | step | visattn ms | baseline | baseline ms | time ratio | visattn MiB | baseline MiB | "
             "memory ratio | targets (time, memory) |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for e in rows:
        for step in ("forward", "forward_backward"):
            ours, theirs = e["subject"][step], e["baseline"][step]
            mem = e.get("memory_ratio", {}).get(step)
            targets = "-" if e["target_time"] is None else f"<= {e['target_time']}, <= {e['target_memory']}"
            lines.append(
                f"| {e['case']} | {e['size'][0]}x{e['size'][1]} | {step.replace('_', '+')} | {ms(ours)} | "
                f"{e['baseline_label']} | {ms(theirs)} | {e['time_ratio'][step]:.2f} | {mib(ours['peak_bytes'])} | "
                f"{mib(theirs['peak_bytes'])} | {'-' if mem is None else f'{mem:.2f}'} | {targets} |")
    lines += ["", "Max |visattn - baseline| of the forward outputs: "
              + ", ".join(f"{e['case']} {e['max_abs_diff']:.1e}" for e in rows) + ".", ""]
    lines += [f"- {e['case']}: {e['note']}" for e in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(json.loads(args.memory_child))
        return
    torch.set_flush_denormal(True)
    names = [n for n in args.only.split(",") if n]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for device in devices:
        rows = measure(device, args.repeats, args.warmup, names, memory=not args.no_memory)
        env = environment(device)
        payload = {"benchmark": "context", "device": device, "environment": env, "repeats": args.repeats,
                   "warmup": args.warmup, "results": rows}
        (RESULTS / f"context-{device}.json").write_text(json.dumps(payload, indent=1) + "\n")
        (RESULTS / f"context-{device}.md").write_text(markdown(device, env, rows, args.repeats, args.warmup))
        print(f"wrote {RESULTS / f'context-{device}.json'} and .md")


if __name__ == "__main__":
    main()
