"""Criss-cross attention and PSA: visattn's kernels against the textbook formulations, same inputs, one run.

Run by hand (not part of the tests):

    OMP_NUM_THREADS=2 python benchmarks/context_cc_psa.py [--device cpu|cuda|all] [--repeats N] [--warmup N]

Cases (B = 1, C = 512, float32):

- ``cc`` at 128 x 128 (``--cc-size``): ``visattn.ops.criss_cross`` (channels-last batched matmuls) against
  mmcv's pure-PyTorch formulation (``mmcv_criss_cross`` below: NCHW ``einsum`` for the column / row energies,
  a dense -inf diagonal, ``einsum`` aggregation), which is what users of the official code run. Two levels:
  the attention op alone (q, k, v given, each in its formulation's natural layout) and the whole module
  (``CrissCrossAttention``, recurrence 2, against a module with the same weights whose attention is the
  mmcv one). Target: time <= 0.8x the mmcv formulation.
- ``psa`` at 64 x 64 (mode ``both``, C' = C / 4 = 128, shrink 1): ``visattn.ops.psa`` (one ``as_strided``
  gather of the channels-last mask) against a scatter formulation written below (the official ``psa_mask``
  done with precomputed index tensors: gather the window entries, scatter them into a zero buffer). Op
  level (re-index + softmax + aggregation, mask given: channels-last for visattn, NCHW for the scatter, as
  each module makes it) and module level (``PointwiseSpatialAttention`` against the same module with the
  scatter re-indexing). Target: time <= 0.9x the scatter formulation.

Times are medians of ``--repeats`` runs after ``--warmup`` runs, the two implementations of a case run in
alternation (A B, B A, ...) so that on a shared machine both see the same load; forward in eval mode under
``torch.inference_mode``, forward + backward in train mode with gradients to the parameters and inputs.
Peak memory (the step's gradients included): on CUDA ``max_memory_allocated`` during one step beyond what
was allocated before it; on the CPU the growth of the resident set during one step, measured in a fresh
child process (glibc's mmap threshold pinned at 64 KiB, ``malloc_trim`` before, ``VmHWM`` reset through
``/proc/self/clear_refs``).

Writes ``benchmarks/results/context-cc-psa-<device>.json`` and ``.md``.
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
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visattn.bench.allocator import allocator_state, pin_allocator
from visattn.modules.criss_cross import CrissCrossAttention
from visattn.modules.psanet import PointwiseSpatialAttention
from visattn.ops.criss_cross import criss_cross_attention
from visattn.ops.psa import psa_attention

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, CHANNELS = 1, 512
CC_SIZE, PSA_SIZE = (128, 128), (64, 64)
TARGETS = {"cc": 0.8, "psa": 0.9}
BASELINE = {"cc": "mmcv", "psa": "scatter"}


# ------------------------------------------------------------------ the formulations compared against


def mmcv_criss_cross(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Criss-cross attention as mmcv's pure-PyTorch ``CrissCrossAttention`` computes it (what users run).

    The column energies come out as (B, W, H, H') and are transposed to (B, H, W, H') (a strided view), a
    dense (H, H') -inf diagonal is added (not a boolean mask), one softmax over the concatenated H' + W' keys,
    and two einsums aggregate V: q, k (B, C', H, W), v (B, C, H, W) -> (B, C, H, W).
    """
    h = q.shape[2]
    neg_inf_diag = torch.diag(torch.full((h,), float("-inf"), device=q.device, dtype=q.dtype))  # [H, H']
    energy_col = (torch.einsum("bchw,bciw->bwhi", q, k) + neg_inf_diag).transpose(1, 2)  # [B, H, W, H']
    energy_row = torch.einsum("bchw,bchj->bhwj", q, k)  # [B, H, W, W']
    attn = torch.softmax(torch.cat((energy_col, energy_row), dim=-1), dim=-1)
    out = torch.einsum("bciw,bhwi->bchw", v, attn[..., :h])
    return out + torch.einsum("bchj,bhwj->bchw", v, attn[..., h:])


class MmcvCrissCross(nn.Module):
    """``CrissCrossAttention`` (same parameters) with mmcv's attention formulation, applied ``recurrence`` times."""

    def __init__(self, ref: CrissCrossAttention):
        super().__init__()
        self.query_conv, self.key_conv, self.value_conv = ref.query_conv, ref.key_conv, ref.value_conv
        self.gamma, self.recurrence = ref.gamma, ref.recurrence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.gamma * mmcv_criss_cross(self.query_conv(x), self.key_conv(x), self.value_conv(x)) + x
        return x


_INDEX_CACHE: dict = {}


def _scatter_indices(h: int, w: int, mode: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each mask entry inside its window: flat source index in (M, H, W) and destination in (HW, HW),
    with the reference C++ loops' arithmetic (computed once per size and cached)."""
    key = (h, w, mode, str(device))
    if key not in _INDEX_CACHE:
        with torch.inference_mode(False):  # normal tensors, usable by autograd later
            _INDEX_CACHE[key] = _make_scatter_indices(h, w, mode, device)
    return _INDEX_CACHE[key]


def _make_scatter_indices(h: int, w: int, mode: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mh, mw = 2 * h - 1, 2 * w - 1
    hidx = torch.arange(mh, device=device).view(mh, 1, 1, 1)
    widx = torch.arange(mw, device=device).view(1, mw, 1, 1)
    fh = torch.arange(h, device=device).view(1, 1, h, 1)
    fw = torch.arange(w, device=device).view(1, 1, 1, w)
    ph, pw = hidx + fh - (h - 1), widx + fw - (w - 1)  # the other position, feature-indexed
    valid = (ph >= 0) & (ph < h) & (pw >= 0) & (pw < w)
    src = ((hidx * mw + widx) * h + fh) * w + fw
    if mode == "collect":
        dst = (ph * w + pw) * (h * w) + fh * w + fw
    else:
        dst = (fh * w + fw) * (h * w) + ph * w + pw
    return src.expand_as(valid)[valid].contiguous(), dst.expand_as(valid)[valid].contiguous()


def psa_scatter(mask: torch.Tensor, x: torch.Tensor, mode: str) -> torch.Tensor:
    """PSA of one branch with the scatter re-indexing: mask (B, M, H, W) NCHW, x (B, C, H, W)."""
    b, c, h, w = x.shape
    src, dst = _scatter_indices(h, w, mode, mask.device)
    values = mask.flatten(1).index_select(1, src)  # [B, (HW)^2]: the entries inside the windows
    buffer = mask.new_zeros(b, h * w * h * w).scatter(1, dst.expand(b, -1), values).view(b, h * w, h * w)
    a = torch.softmax(buffer.float(), dim=1).to(x.dtype)  # over the sources, as official
    return torch.bmm(x.reshape(b, c, h * w), a).view(b, c, h, w)


class ScatterPSA(nn.Module):
    """``PointwiseSpatialAttention`` (same parameters) with the official NCHW mask and the scatter re-indexing."""

    def __init__(self, ref: PointwiseSpatialAttention):
        super().__init__()
        self.ref = ref

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref, outs = self.ref, []
        for name in ref.branches:
            branch = getattr(ref, name)
            r = branch.reduced(x)
            mask = F.conv2d(branch.adapt(r), branch.mask_conv.weight)  # [B, M, H, W]
            outs.append(psa_scatter(mask, r, name))
        return ref.fuse(torch.cat((x, ref.proj(torch.cat(outs, dim=1))), dim=1))


# ------------------------------------------------------------------ subjects


def _randn(*shape, device, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def build(case: str, level: str, impl: str, device: str):
    """(callable module, inputs) for one measurement; the same values for both implementations."""
    torch.manual_seed(0)
    if case == "cc":
        h, w = CC_SIZE
        if level == "op":
            rd = CHANNELS // 8
            q, k = _randn(BATCH, rd, h, w, device=device, seed=1), _randn(BATCH, rd, h, w, device=device, seed=2)
            v = _randn(BATCH, CHANNELS, h, w, device=device, seed=3)
            if impl == "visattn":
                cl = [t.permute(0, 2, 3, 1).contiguous() for t in (q, k, v)]  # as the module makes them
                return (lambda q, k, v: criss_cross_attention(q, k, v)[0].permute(0, 3, 1, 2)), cl  # a view
            return mmcv_criss_cross, [q, k, v]
        m = CrissCrossAttention(CHANNELS)
        with torch.no_grad():
            m.gamma.fill_(0.5)
        m = m if impl == "visattn" else MmcvCrissCross(m)
        return m.to(device), [_randn(BATCH, CHANNELS, h, w, device=device, seed=4)]
    h, w = PSA_SIZE
    if level == "op":
        mid, masks = CHANNELS // 4, (2 * h - 1) * (2 * w - 1)
        mask = _randn(BATCH, masks, h, w, device=device, seed=5)
        x = _randn(BATCH, mid, h, w, device=device, seed=6)
        if impl == "visattn":
            cl = mask.permute(0, 2, 3, 1).contiguous()  # as the module makes it
            return (lambda m, x: psa_attention(m, x, "collect") + psa_attention(m, x, "distribute")), [cl, x]
        return (lambda m, x: psa_scatter(m, x, "collect") + psa_scatter(m, x, "distribute")), [mask, x]
    m = PointwiseSpatialAttention(CHANNELS, feature_size=(h, w))
    m = m if impl == "visattn" else ScatterPSA(m)
    return m.to(device), [_randn(BATCH, CHANNELS, h, w, device=device, seed=7)]


def steps(fn, inputs):
    """forward (eval, inference mode) and forward + backward (train, grads to parameters and inputs)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    params = list(fn.parameters()) if isinstance(fn, nn.Module) else []
    upstream = []

    def forward():
        if isinstance(fn, nn.Module):
            fn.eval()
        with torch.inference_mode():
            return fn(*inputs)

    def drop_grads():
        for t in leaves + params:
            t.grad = None

    def forward_backward():
        if isinstance(fn, nn.Module):
            fn.train()
        drop_grads()
        out = fn(*leaves)
        if not upstream:
            upstream.append(_randn(*out.shape, device=out.device, seed=9))
        out.backward(upstream[0])

    forward_backward.drop_grads = drop_grads
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


def timed(run, device):
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def _status_bytes(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE).group(1)) * 1024


def _trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _memory_child(request):
    """In a fresh process: RSS growth of one step after a warm-up step."""
    torch.set_num_threads(int(request["threads"]))
    global CC_SIZE, PSA_SIZE
    CC_SIZE, PSA_SIZE = tuple(request["cc_size"]), tuple(request["psa_size"])
    fn, inputs = build(request["case"], request["level"], request["impl"], "cpu")
    forward, forward_backward = steps(fn, inputs)
    run = forward if request["step"] == "forward" else forward_backward
    run()
    if run is forward_backward:
        forward_backward.drop_grads()  # the measured step allocates its gradients afresh: count them
    gc.collect()
    _trim()
    base = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    run()
    print(json.dumps({"peak": max(0, _status_bytes("VmHWM") - base)}))


def cpu_peak(case, level, impl, step):
    request = {"case": case, "level": level, "impl": impl, "step": step, "threads": torch.get_num_threads(),
               "cc_size": list(CC_SIZE), "psa_size": list(PSA_SIZE)}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # memory wants freed buffers to leave the RSS
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(request)], env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak"]


def cuda_peak(run):
    run()
    if hasattr(run, "drop_grads"):
        run.drop_grads()
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return max(0, torch.cuda.max_memory_allocated() - base)


def check_same(case, level, device):
    """Max |visattn - baseline| of the forward on the shared inputs (float32)."""
    outs = []
    for impl in ("visattn", BASELINE[case]):
        fn, inputs = build(case, level, impl, device)
        forward, _ = steps(fn, inputs)
        outs.append(forward().float())
    return (outs[0] - outs[1]).abs().max().item()


def measure(device, repeats, warmup, memory=True):
    """Both implementations of a case timed in alternation (A B, B A, ...) so that both see the same load."""
    rows = []
    for case in ("cc", "psa"):
        base = BASELINE[case]
        for level in ("op", "module"):
            diff = check_same(case, level, device)
            entry = {"case": case, "level": level, "size": list(CC_SIZE if case == "cc" else PSA_SIZE),
                     "baseline": base, "target_ratio": TARGETS[case], "max_abs_diff": diff}
            subjects = {impl: steps(*build(case, level, impl, device)) for impl in ("visattn", base)}
            for s, step in enumerate(("forward", "forward_backward")):
                runs = {impl: subjects[impl][s] for impl in subjects}
                for run in runs.values():
                    for _ in range(warmup):
                        run()
                _sync(device)
                samples = {impl: [] for impl in runs}
                for r in range(repeats):
                    for impl in (("visattn", base) if r % 2 == 0 else (base, "visattn")):
                        samples[impl].append(timed(runs[impl], device))
                for impl in runs:
                    med = statistics.median(samples[impl])
                    p10, p90 = _quantile(samples[impl], 0.1), _quantile(samples[impl], 0.9)
                    if not memory:
                        peak = None
                    elif device == "cuda":
                        peak = cuda_peak(runs[impl])
                    else:
                        peak = cpu_peak(case, level, impl, step)
                    entry.setdefault(impl, {})[step] = {"median_s": med, "p10_s": p10, "p90_s": p90,
                                                        "samples_s": samples[impl], "peak_bytes": peak}
                    print(f"{device} {case:3s} {level:6s} {impl:8s} {step:16s} {med * 1e3:9.1f} ms  "
                          f"peak {'-' if peak is None else f'{peak / 2**20:8.1f} MiB'}", flush=True)
                ours, theirs = entry["visattn"][step], entry[base][step]
                entry.setdefault("time_ratio", {})[step] = ours["median_s"] / theirs["median_s"]
                if ours["peak_bytes"] and theirs["peak_bytes"]:
                    entry.setdefault("memory_ratio", {})[step] = ours["peak_bytes"] / theirs["peak_bytes"]
            del subjects, runs
            gc.collect()
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


def markdown(device, env, rows, repeats, warmup, remark=""):
    lines = [f"# Criss-cross attention and PSA kernels ({device})", "",
             f"torch {env['torch']}, {env['threads']} threads, {env.get('gpu', env.get('cpu', ''))}; B = {BATCH}, "
             f"C = {CHANNELS}, float32; times in ms: median (p10-p90) of {repeats} interleaved runs after {warmup} "
             f"warm-up; allocator: {env['allocator']}; load average at the end "
             f"{tuple(round(x, 1) for x in env.get('load_average', ()))}.", "",
             "Ratio = visattn / baseline (below 1: visattn is faster / smaller). Generated by "
             "`benchmarks/context_cc_psa.py`. Baselines: `mmcv` is mmcv's pure-PyTorch CrissCrossAttention "
             "formulation (einsums, a dense -inf diagonal), `scatter` the official psa_mask re-indexing done with "
             "index tensors.", ""]
    if remark:
        lines += [remark, ""]
    lines += [
             "| case | level | size | step | visattn ms | baseline | baseline ms | time ratio | target | "
             "visattn MiB | baseline MiB | memory ratio |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for e in rows:
        base = e["baseline"]
        for step in ("forward", "forward_backward"):
            ours, theirs = e["visattn"][step], e[base][step]
            mem = e.get("memory_ratio", {}).get(step)

            def mib(b):
                return "-" if b is None else f"{b / 2**20:.0f}"

            lines.append(
                f"| {e['case']} | {e['level']} | {e['size'][0]}x{e['size'][1]} | {step.replace('_', '+')} | "
                f"{_ms(ours)} | {base} | {_ms(theirs)} | "
                f"{e['time_ratio'][step]:.2f} | <= {e['target_ratio']} | {mib(ours['peak_bytes'])} | "
                f"{mib(theirs['peak_bytes'])} | {'-' if mem is None else f'{mem:.2f}'} |")
    lines += ["", "Max |visattn - baseline| of the forward outputs: "
              + ", ".join(f"{e['case']} {e['level']} {e['max_abs_diff']:.1e}" for e in rows) + "."]
    return "\n".join(lines) + "\n"


def _ms(r):
    return f"{r['median_s'] * 1e3:.1f} ({r['p10_s'] * 1e3:.1f}-{r['p90_s'] * 1e3:.1f})"


def main(argv=None):
    global CC_SIZE, PSA_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--cc-size", type=int, default=CC_SIZE[0], help="criss-cross H = W (default 128)")
    parser.add_argument("--psa-size", type=int, default=PSA_SIZE[0], help="PSA H = W (default 64)")
    parser.add_argument("--remark", default="", help="a line for the Markdown file (e.g. the machine's load)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(json.loads(args.memory_child))
        return
    CC_SIZE, PSA_SIZE = (args.cc_size, args.cc_size), (args.psa_size, args.psa_size)
    torch.set_flush_denormal(True)
    pin_allocator()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for device in devices:
        rows = measure(device, args.repeats, args.warmup, memory=not args.no_memory)
        env = environment(device)
        payload = {"benchmark": "context_cc_psa", "device": device, "environment": env, "repeats": args.repeats,
                   "warmup": args.warmup, "remark": args.remark, "results": rows}
        (RESULTS / f"context-cc-psa-{device}.json").write_text(json.dumps(payload, indent=1) + "\n")
        (RESULTS / f"context-cc-psa-{device}.md").write_text(markdown(device, env, rows, args.repeats, args.warmup,
                                                                      args.remark))
        print(f"wrote {RESULTS / f'context-cc-psa-{device}.json'} and .md")


if __name__ == "__main__":
    main()
