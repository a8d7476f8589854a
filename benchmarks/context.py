"""The quadratic context modules against their plain formulations: same weights, same inputs, one run.

Run by hand (not part of the tests):

    OMP_NUM_THREADS=1 python benchmarks/context.py [--device cpu|cuda|all] [--rounds N] [--warmup N] [--only a,b]
        [--sizes 32,48,64 --lean]  # the size sweep: visattn as shipped, with the lean kernel forced, and plain

Each entry of :data:`CASES` pairs a visattn module (``subject``, default settings, ``memory_efficient=True``)
with a plain formulation written in this file (``baseline``), which uses the subject's own parameters and
writes the ``HW x HW`` attention map out, as the official code does:

- ``nonlocal`` at 96 x 96: embedded Gaussian, C/2 = 256 inner channels; visattn uses fused SDPA. The plain
  formulation is the common one (mmcv's ``NonLocal2d``, the popular port): ``softmax(theta_x @ phi_x) @ g_x``.
- ``pam`` at 96 x 96: Q, K at C/8 = 64, V at C = 512; visattn uses the query-blocked exact kernel with a
  recomputing backward (``visattn.ops.blocked_attention``).
- ``pam_sdpa`` at 96 x 96: the same PAM through ``F.scaled_dot_product_attention(q, k, v, scale=1)`` with the
  unequal widths, to record why visattn does not use it on the CPU (no fused kernel for unequal widths: it
  takes SDPA's math path, which builds the map).
- ``oc`` at 96 x 96: base-OC, key = value = C/2; visattn uses SDPA.
- ``mhsa`` at 48 x 48: 8 heads of 64; visattn uses SDPA. (At 96 x 96 the plain formulation holds 8 maps of
  85 M entries, several GiB.)

Targets (``nonlocal``, ``pam``): peak memory <= 0.15x and time <= 1.0x the plain formulation.

Times: median, p10 and p90 over ``--rounds`` interleaved rounds (every contender once per round, in an order
that rotates, so that all see the same load) after ``--warmup`` runs; forward in eval mode under
``torch.inference_mode``; forward + backward in train mode, gradients to the parameters and the input.
Peak memory: on CUDA, ``max_memory_allocated`` during one step beyond what was allocated before it. On the
CPU, the growth of the resident set during one step after a warm-up step, in a fresh child process: glibc's
mmap threshold is pinned at 64 KiB (so freed buffers leave the resident set), ``malloc_trim`` runs before the
step and the high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` (where that file cannot be
written, the child measures ``ru_maxrss`` growth over the first step instead, without a warm-up).

The CPU timings run with glibc's allocator pinned (``visattn.bench.allocator``: freed temporaries are reused,
not faulted in afresh each call); the files record the allocator.

Writes ``benchmarks/results/context-<device>.json`` and ``.md`` (``context-sizes-<device>`` with ``--sizes``).

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

from visattn.bench.allocator import allocator_state, pin_allocator
from visattn.modules.danet import PositionAttention
from visattn.modules.mhsa import MultiHeadSelfAttention
from visattn.modules.nonlocal_block import NonLocalBlock
from visattn.modules.ocnet import ObjectContext
from visattn.ops import attention

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, CHANNELS = 1, 512


# ------------------------------------------------------------------ the plain formulations


class PlainNonLocal(nn.Module):
    """Embedded-Gaussian non-local block as users write it (the subject's weights).

    The common PyTorch formulation (the popular port of the official code, mmcv's ``NonLocal2d``): tokens
    ``theta_x (B, N, Ci)``, ``phi_x (B, Ci, N)``, ``g_x (B, N, Ci)``; ``f = softmax(theta_x @ phi_x)``;
    ``y = f @ g_x``. The map is used as it is made (no transposed copy of it in the backward).
    """

    def __init__(self, ref: NonLocalBlock):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        r, (b, _, h, w) = self.ref, x.shape
        theta_x = r.theta(x).flatten(2).permute(0, 2, 1)  # [B, N, Ci]
        phi_x = r.phi(r.pool(x)).flatten(2)  # [B, Ci, N]
        g_x = r.g(r.pool(x)).flatten(2).permute(0, 2, 1)  # [B, N, Ci]
        f = torch.softmax(torch.matmul(theta_x, phi_x), dim=-1)  # [B, N, N]
        y = torch.matmul(f, g_x).permute(0, 2, 1).reshape(b, -1, h, w)
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


class ForcedLean(nn.Module):
    """The subject with ``softmax_attention``'s size rule off: the lean kernel at every size (for comparison)."""

    def __init__(self, ref: nn.Module):
        super().__init__()
        self.ref = ref

    def forward(self, x):
        saved = attention.EXPLICIT_MAX_BYTES
        attention.EXPLICIT_MAX_BYTES = -1
        try:
            return self.ref(x)
        finally:
            attention.EXPLICIT_MAX_BYTES = saved


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


IMPL_LABELS = {"subject": "visattn", "lean": "visattn, lean forced", "baseline": None}  # baseline: the case's label


def build(name: str, impl: str, device: str, size: tuple[int, int] | None = None):
    """(module, inputs) for one measurement: the same weights and values for every contender.

    ``impl``: ``subject`` (visattn as shipped: the explicit map up to ``EXPLICIT_MAX_BYTES``, lean kernels
    above), ``lean`` (visattn with the lean kernel at every size) or ``baseline`` (the plain formulation).
    """
    case = _case(name)
    size = tuple(size or case.size)
    torch.manual_seed(0)
    subject = case.subject(CHANNELS)
    module = {"subject": lambda: subject, "lean": lambda: ForcedLean(subject),
              "baseline": lambda: case.baseline(subject)}[impl]()
    return module.to(device), [_randn(BATCH, CHANNELS, *size, device=device, seed=1)]


def steps(module: nn.Module, inputs: list[torch.Tensor]):
    """forward (eval, inference mode) and forward + backward (train; gradients to the parameters and the input).

    The input is a leaf that requires grad, as a feature map inside a network: the backward computes the
    input gradient too (what a training step keeps and computes).
    """
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


def _summary(samples):
    return {"median_s": statistics.median(samples), "p10_s": _quantile(samples, 0.1),
            "p90_s": _quantile(samples, 0.9), "samples_s": samples}


def interleaved_timings(runs: dict, device: str, rounds: int, warmup: int) -> dict:
    """Time every contender once per round, in an order that rotates each round, so that all of them see
    the same machine load; returns contender -> median / p10 / p90 over the rounds."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    _sync(device)
    samples = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            start = time.perf_counter()
            runs[name]()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: _summary(s) for name, s in samples.items()}


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
    module, inputs = build(request["case"], request["impl"], "cpu", tuple(request["size"]))
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


def cpu_peak(name, impl, step, size):
    request = {"case": name, "impl": impl, "step": step, "threads": torch.get_num_threads(), "size": list(size)}
    # memory, unlike timing, wants freed buffers to leave the resident set: a low mmap threshold in the child
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
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


def max_abs_diff(name, device, size):
    """Max |subject - baseline| of the forward outputs on the shared inputs (float32)."""
    outs = []
    for impl in ("subject", "baseline"):
        module, inputs = build(name, impl, device, size)
        outs.append(steps(module, inputs)[0]().float())
    return (outs[0] - outs[1]).abs().max().item()


def measure(device, rounds, warmup, names, memory=True, sizes=None, lean=False):
    """Every case (at its size, or at each of ``sizes``): all contenders interleaved, then peak memory."""
    rows = []
    for case in CASES:
        if names and case.name not in names:
            continue
        impls = ["subject", "baseline"] + (["lean"] if lean and case.target_time is not None else [])
        for size in sizes or [case.size]:
            entry = {"case": case.name, "size": list(size), "note": case.note, "subject_label": case.subject_label,
                     "baseline_label": case.baseline_label, "target_time": case.target_time,
                     "target_memory": case.target_memory, "max_abs_diff": max_abs_diff(case.name, device, size),
                     "explicit_map_bytes": BATCH * (size[0] * size[1]) ** 2 * 4,
                     "explicit_max_bytes": attention.EXPLICIT_MAX_BYTES}
            built = {impl: build(case.name, impl, device, size) for impl in impls}
            stepped = {impl: steps(*built[impl]) for impl in impls}
            for i, step in enumerate(("forward", "forward_backward")):
                timed = interleaved_timings({impl: stepped[impl][i] for impl in impls}, device, rounds, warmup)
                for impl in impls:
                    result = timed[impl]
                    if not memory:
                        result["peak_bytes"], result["peak_method"] = None, None
                    elif device == "cuda":
                        result["peak_bytes"] = cuda_peak(stepped[impl][i])
                        result["peak_method"] = "max_memory_allocated"
                    else:
                        result["peak_bytes"], result["peak_method"] = cpu_peak(case.name, impl, step, size)
                    entry.setdefault(impl, {})[step] = result
                    peak = result["peak_bytes"]
                    label = IMPL_LABELS[impl] or case.baseline_label
                    print(f"{device} {case.name:9s} {size[0]}x{size[1]} {label:21s} {step:16s} "
                          f"{result['median_s'] * 1e3:9.1f} ms (p10 {result['p10_s'] * 1e3:.1f}, "
                          f"p90 {result['p90_s'] * 1e3:.1f})  peak "
                          f"{'-' if peak is None else f'{peak / 2**20:8.1f} MiB'}", flush=True)
            del built, stepped
            gc.collect()
            for impl in [i for i in impls if i != "baseline"]:
                suffix = "" if impl == "subject" else f"_{impl}"
                for step in ("forward", "forward_backward"):
                    ours, base = entry[impl][step], entry["baseline"][step]
                    entry.setdefault(f"time_ratio{suffix}", {})[step] = ours["median_s"] / base["median_s"]
                    if ours["peak_bytes"] is not None and base["peak_bytes"]:
                        entry.setdefault(f"memory_ratio{suffix}", {})[step] = ours["peak_bytes"] / base["peak_bytes"]
            rows.append(entry)
    return rows


def environment(device):
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": platform.machine(), "batch": BATCH, "channels": CHANNELS, "dtype": "float32",
           "allocator": allocator_state() if device == "cpu" else "CUDA caching allocator"}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
        env["load_average"] = os.getloadavg()
    except (OSError, AttributeError):
        pass
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def markdown(device, env, rows, rounds, warmup, remark=""):
    def mib(b):
        return "-" if b is None else f"{b / 2**20:.0f}"

    def ms(r):
        return f"{r['median_s'] * 1e3:.0f} ({r['p10_s'] * 1e3:.0f}-{r['p90_s'] * 1e3:.0f})"

    lines = [f"# Context modules against their plain formulations ({device})", "",
             f"torch {env['torch']}, {env['threads']} threads, {env.get('gpu', env.get('cpu', ''))}; B = {BATCH}, "
             f"C = {CHANNELS}, float32; times in ms: median (p10-p90) over {rounds} interleaved rounds after "
             f"{warmup} warm-up; allocator: {env['allocator']}; load average at the end "
             f"{tuple(round(x, 1) for x in env.get('load_average', ()))}.", "",
             "Ratio = visattn / baseline (below 1: visattn is faster / smaller). Generated by "
             "`benchmarks/context.py`. visattn writes the attention map out when it takes at most "
             f"{attention.EXPLICIT_MAX_BYTES >> 20} MiB (`EXPLICIT_MAX_BYTES`) and uses its lean kernels above; "
             "\"lean forced\" rows use the lean kernel at every size.", ""]
    if remark:
        lines += [remark, ""]
    lines += ["| case | size | map MiB | contender | step | ms | baseline | baseline ms | time ratio | MiB | "
              "baseline MiB | memory ratio | targets (time, memory) |",
              "|---|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for e in rows:
        for impl in ("subject", "lean"):
            if impl not in e:
                continue
            suffix = "" if impl == "subject" else f"_{impl}"
            for step in ("forward", "forward_backward"):
                ours, theirs = e[impl][step], e["baseline"][step]
                mem = e.get(f"memory_ratio{suffix}", {}).get(step)
                targets = ("-" if e["target_time"] is None or impl != "subject"
                           else f"<= {e['target_time']}, <= {e['target_memory']} (memory: 96x96 and above)")
                lines.append(
                    f"| {e['case']} | {e['size'][0]}x{e['size'][1]} | {e['explicit_map_bytes'] / 2**20:.0f} | "
                    f"{IMPL_LABELS[impl]} | {step.replace('_', '+')} | {ms(ours)} | {e['baseline_label']} | "
                    f"{ms(theirs)} | {e[f'time_ratio{suffix}'][step]:.2f} | {mib(ours['peak_bytes'])} | "
                    f"{mib(theirs['peak_bytes'])} | {'-' if mem is None else f'{mem:.2f}'} | {targets} |")
    lines += ["", "Max |visattn - baseline| of the forward outputs: "
              + ", ".join(f"{e['case']} {e['size'][0]}x{e['size'][1]} {e['max_abs_diff']:.1e}" for e in rows) + ".",
              ""]
    lines += [f"- {e['case']}: {e['note']}" for e in {e['case']: e for e in rows}.values()]
    return "\n".join(lines) + "\n"


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        h, _, w = item.strip().partition("x")
        out.append((int(h), int(w or h)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--rounds", "--repeats", type=int, default=10, dest="rounds",
                        help="interleaved timing rounds (each contender once per round)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--sizes", default="", help="e.g. 32,48,64: run the cases at these sizes (writes "
                        "context-sizes-<device>) instead of their own")
    parser.add_argument("--lean", action="store_true", help="also time visattn with the lean kernel forced")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--remark", default="", help="a line for the Markdown file (e.g. the machine's load)")
    parser.add_argument("--stem", default="", help="output name before -<device> (default: context, or "
                        "context-sizes with --sizes)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(json.loads(args.memory_child))
        return
    torch.set_flush_denormal(True)
    pin_allocator()
    names = [n for n in args.only.split(",") if n]
    sizes = _sizes(args.sizes) if args.sizes else None
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = args.stem or ("context-sizes" if sizes else "context")
    for device in devices:
        rows = measure(device, args.rounds, args.warmup, names, memory=not args.no_memory, sizes=sizes,
                       lean=args.lean)
        env = environment(device)
        payload = {"benchmark": "context", "device": device, "environment": env, "rounds": args.rounds,
                   "warmup": args.warmup, "remark": args.remark, "results": rows}
        (RESULTS / f"{stem}-{device}.json").write_text(json.dumps(payload, indent=1) + "\n")
        (RESULTS / f"{stem}-{device}.md").write_text(markdown(device, env, rows, args.rounds, args.warmup,
                                                              args.remark))
        print(f"wrote {RESULTS / f'{stem}-{device}.json'} and .md")


if __name__ == "__main__":
    main()
