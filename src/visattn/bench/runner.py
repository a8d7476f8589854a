"""The benchmark run: every module at every size, the baseline convolution, and the peers.

For each thing measured: parameters (``sum(p.numel())``), FLOPs and an element-wise estimate
(:mod:`.flops`), forward time (eval, ``torch.inference_mode``) and optionally forward+backward time
(train mode, gradients to the parameters and the inputs) as median, p10 and p90 over ``repeat`` calls
after ``warmup`` calls (:mod:`.measure`), and peak memory (:mod:`.memory`). A module that raises
``ValueError`` for a size (too small, or size-bound and not buildable) is recorded as ``skipped`` with
the reason; out-of-memory is ``skipped`` too; any other exception is recorded as ``error``.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import shlex
from dataclasses import dataclass, field

import torch

import visattn

from ..spec import parse_module
from .allocator import pin_allocator
from .environment import environment
from .flops import ELEMENTWISE_DEFINITION, FLOPS_DEFINITION, count_ops
from .measure import forward_step, summarize, time_step, training_step
from .memory import CpuMemoryProbe, cuda_peak_bytes
from .peers import peers_for
from .progress import Progress
from .report import fmt_ms
from .subjects import BASELINES, Spec, build_subject

__all__ = ["BenchConfig", "run_bench", "command_line", "SCHEMA_ID"]

SCHEMA_ID = "visattn-bench/1"

_MEASUREMENT = ("params", "flops", "elementwise_ops", "forward_ms", "forward_backward_ms", "memory_forward_bytes",
                "memory_forward_backward_bytes", "memory_note")


@dataclass
class BenchConfig:
    """What to measure and how; the fields mirror ``visattn bench``'s options.

    Attributes:
        keys: modules in the command line's grammar (:mod:`visattn.spec`): registry keys, or
            ``key:arg=value[:arg=value]`` to measure a module with other arguments than its defaults.
        channels: input channels ``C``.
        sizes: feature sizes ``(H, W)``.
        batch: batch size.
        device: ``"cpu"`` or ``"cuda[:N]"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        channels_last: modules and inputs in ``torch.channels_last``.
        compile: time ``torch.compile(module)`` (FLOPs are counted on the eager module).
        backward: also time (and measure the memory of) forward+backward.
        repeat: timed calls per measurement.
        warmup: untimed calls before them (at least 2 with ``compile``).
        baseline: a :data:`~visattn.bench.subjects.BASELINES` name, or ``None``.
        peers: also time the timm / torchvision implementations (:mod:`.peers`).
        memory: measure peak memory.
        threads: ``torch.set_num_threads`` for the run (``None``: leave as is).
        max_time: seconds of timed calls per measurement after which timing stops early (at least 3
            calls); ``None``: always ``repeat`` calls.
    """

    keys: list[str]
    channels: int = 256
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(56, 56)])
    batch: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    backward: bool = False
    repeat: int = 20
    warmup: int = 3
    baseline: str | None = "conv3x3"
    peers: bool = False
    memory: bool = True
    threads: int | None = None
    max_time: float | None = None


def command_line(cfg: BenchConfig) -> str:
    """The ``visattn bench`` command that repeats this configuration."""
    keys = ["all"] if cfg.keys == visattn.list_modules() else list(cfg.keys)
    parts = ["visattn", "bench", *keys, "--channels", str(cfg.channels)]
    for h, w in cfg.sizes:
        parts += ["--size", str(h) if h == w else f"{h}x{w}"]
    parts += ["--batch", str(cfg.batch), "--device", cfg.device, "--dtype", cfg.dtype, "--repeat", str(cfg.repeat),
              "--warmup", str(cfg.warmup), "--baseline", cfg.baseline or "none"]
    flags = {"--channels-last": cfg.channels_last, "--compile": cfg.compile, "--backward": cfg.backward,
             "--peers": cfg.peers, "--no-memory": not cfg.memory}
    parts += [flag for flag, on in flags.items() if on]
    if cfg.threads:
        parts += ["--threads", str(cfg.threads)]
    if cfg.max_time is not None:
        parts += ["--max-time", f"{cfg.max_time:g}"]
    return shlex.join(parts)


def _classify(err: BaseException) -> tuple[str, str]:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (ValueError, ImportError)):
        return "skipped", text
    if isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text:
        return "skipped", f"out of memory: {text}"
    return "error", f"{type(err).__name__}: {text}"


def _empty() -> dict:
    return dict.fromkeys(_MEASUREMENT)


class _Runner:
    def __init__(self, cfg: BenchConfig, progress: Progress):
        self.cfg = cfg
        self.progress = progress
        self.cuda = torch.device(cfg.device).type == "cuda"
        self.probe = CpuMemoryProbe(threads=torch.get_num_threads()) if cfg.memory and not self.cuda else None

    def spec(self, kind: str, name: str, size: tuple[int, int], kwargs: dict | None = None) -> Spec:
        c = self.cfg
        return Spec(kind, name, c.channels, tuple(size), c.batch, c.device, c.dtype, c.channels_last, kwargs or {})

    def measure(self, spec: Spec, *, count: bool = True, memory: bool = True) -> dict:
        """All the numbers for one spec; raises what building or running it raises."""
        c = self.cfg
        out = _empty()
        module, inputs = build_subject(spec)
        try:
            out["params"] = sum(p.numel() for p in module.parameters())
            if count:
                ops = count_ops(module, inputs)
                out["flops"], out["elementwise_ops"] = ops["flops"], ops["elementwise_ops"]
            runner = torch.compile(module) if c.compile else module
            warmup = max(c.warmup, 2) if c.compile else c.warmup
            timing = {"repeat": c.repeat, "warmup": warmup, "device": c.device, "max_time": c.max_time}
            out["forward_ms"] = summarize(time_step(forward_step(runner, inputs), **timing))
            if c.backward:
                out["forward_backward_ms"] = summarize(time_step(training_step(runner, inputs), **timing))
            if memory and c.memory:
                if self.cuda:
                    out["memory_forward_bytes"] = cuda_peak_bytes(forward_step(runner, inputs), c.device)
                    if c.backward:
                        out["memory_forward_backward_bytes"] = cuda_peak_bytes(training_step(runner, inputs),
                                                                               c.device)
                else:
                    mem = self.probe.measure(spec, backward=c.backward, compile=c.compile)
                    out["memory_forward_bytes"] = mem["forward"]
                    out["memory_forward_backward_bytes"] = mem["forward_backward"]
                    out["memory_note"] = mem["note"]
        finally:
            del module, inputs
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
        return out

    def attempt(self, spec: Spec, label: str, **kwargs) -> dict:
        self.progress.start(label)
        try:
            result = {"status": "ok", "reason": None, **self.measure(spec, **kwargs)}
        except Exception as err:  # classified: skipped (ValueError, ImportError, OOM) or error
            status, reason = _classify(err)
            result = {"status": status, "reason": reason, **_empty()}
        self.progress.finish(label, _headline(result))
        return result

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()


def _headline(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']} ({r['reason']})"
    text = f"forward {fmt_ms(r['forward_ms']['median'])} ms"
    if r["forward_backward_ms"]:
        text += f", fwd+bwd {fmt_ms(r['forward_backward_ms']['median'])} ms"
    if r["memory_forward_bytes"] is not None:
        text += f", peak {r['memory_forward_bytes'] / 2**20:.3g} MiB"
    elif r["memory_note"]:
        text += f" (memory: {r['memory_note']})"
    return text


def _ratio(a, b) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _relative(r: dict, base: dict | None) -> dict | None:
    if base is None or base["status"] != "ok" or r["status"] != "ok":
        return None
    med = lambda t: t and t["median"]  # noqa: E731
    return {
        "params": _ratio(r["params"], base["params"]),
        "flops": _ratio(r["flops"], base["flops"]),
        "forward_time": _ratio(med(r["forward_ms"]), med(base["forward_ms"])),
        "forward_backward_time": _ratio(med(r["forward_backward_ms"]), med(base["forward_backward_ms"])),
        "memory_forward": _ratio(r["memory_forward_bytes"], base["memory_forward_bytes"]),
        "memory_forward_backward": _ratio(r["memory_forward_backward_bytes"], base["memory_forward_backward_bytes"]),
    }


def _size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def run_bench(cfg: BenchConfig, *, progress: Progress | None = None) -> dict:
    """Run the benchmark and return its report (the JSON document :mod:`.schema` describes).

    Example:
        >>> report = run_bench(BenchConfig(["se"], channels=16, sizes=[(8, 8)], batch=2, repeat=2, warmup=1,
        ...                                memory=False))
        >>> report["results"][0]["params"]  # SE(16): two 1x1 convs 16 -> 1 -> 16 with biases
        49
    """
    modules = {label: parse_module(label) for label in cfg.keys}  # SpecError with suggestions before anything runs
    if cfg.baseline is not None and cfg.baseline not in BASELINES:
        raise ValueError(f"unknown baseline {cfg.baseline!r}; expected one of {sorted(BASELINES)} or None")
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if torch.device(cfg.device).type == "cpu":
        torch.set_flush_denormal(True)
        pin_allocator()  # stable timings: freed temporaries are reused, not faulted in afresh (see allocator.py)
    # peers are built at their defaults: compare them only with modules at theirs
    peer_jobs = {label: peers_for(m.key) if cfg.peers and not m.kwargs else () for label, m in modules.items()}
    total = len(cfg.sizes) * (len(cfg.keys) + (cfg.baseline is not None) + sum(map(len, peer_jobs.values())))
    progress = progress or Progress(total, enabled=False)
    progress.set_total(total)
    environment_now = environment(cfg.device)  # with the run's thread count
    started = datetime.datetime.now(datetime.timezone.utc)
    runner = _Runner(cfg, progress)
    baseline_rows: dict[tuple[int, int], dict] = {}
    results = []
    try:
        for size in cfg.sizes:
            if cfg.baseline is not None:
                row = runner.attempt(runner.spec("baseline", cfg.baseline, size), f"{cfg.baseline} {_size_label(size)}")
                baseline_rows[size] = {"size": list(size), "hw": size[0] * size[1], **row}
        for key in cfg.keys:
            meta = visattn.info(modules[key].key)
            for size in cfg.sizes:
                row = runner.attempt(runner.spec("module", meta.key, size, modules[key].kwargs_dict()),
                                     f"{key} {_size_label(size)}")
                peers = []
                for peer in peer_jobs[key]:
                    p = runner.attempt(runner.spec("peer", f"{meta.key}:{peer.name}", size),
                                       f"{key} {_size_label(size)} vs {peer.name}", count=False, memory=False)
                    peers.append(_peer_row(peer, p, row))
                results.append({
                    "key": key, "title": meta.title, "role": meta.role, "complexity": meta.complexity,
                    "size_bound": meta.size_bound, "size": list(size), "hw": size[0] * size[1], **row,
                    "relative": _relative(row, baseline_rows.get(size)), "peers": peers,
                })
    finally:
        runner.close()
        torch.set_num_threads(threads_before)
    finished = datetime.datetime.now(datetime.timezone.utc)
    statuses = [r["status"] for r in results]
    return {
        "schema": SCHEMA_ID,
        "created": started.isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds(), 3),
        "command": command_line(cfg),
        "environment": environment_now,
        "settings": {**dataclasses.asdict(cfg), "sizes": [list(s) for s in cfg.sizes]},
        "definitions": _definitions(cfg),
        "baseline": None if cfg.baseline is None else {
            "name": cfg.baseline, "definition": BASELINES[cfg.baseline][1],
            "results": [baseline_rows[s] for s in cfg.sizes],
        },
        "results": results,
        "summary": {s: statuses.count(s) for s in ("ok", "skipped", "error")},
    }


def _peer_row(peer, p: dict, mine: dict) -> dict:
    med = lambda r, k: r[k]["median"] if r["status"] == "ok" and r[k] else None  # noqa: E731
    return {
        "name": peer.name, "target": peer.target, "settings": peer.settings, "status": p["status"],
        "reason": p["reason"], "params": p["params"], "forward_ms": p["forward_ms"],
        "forward_backward_ms": p["forward_backward_ms"],
        "ratio_forward": _ratio(med(mine, "forward_ms"), med(p, "forward_ms")),
        "ratio_forward_backward": _ratio(med(mine, "forward_backward_ms"), med(p, "forward_backward_ms")),
    }


def _definitions(cfg: BenchConfig) -> dict:
    cuda = torch.device(cfg.device).type == "cuda"
    return {
        "params": "sum(p.numel() for p in module.parameters())",
        "flops": FLOPS_DEFINITION,
        "elementwise_ops": ELEMENTWISE_DEFINITION,
        "forward_ms": (f"wall-clock ms of one forward of the batch in eval mode under torch.inference_mode: median, "
                       f"p10, p90 of n = {cfg.repeat} calls after {cfg.warmup} warm-up calls"
                       + (f" (fewer, at least 3, once they add up to {cfg.max_time:g} s)" if cfg.max_time else "")
                       + (", CUDA synchronised after each call" if cuda else "")),
        "forward_backward_ms": "as forward_ms for one train-mode forward + backward (gradients to parameters and "
                               "inputs)",
        "memory": ("torch.cuda.max_memory_allocated during one step minus memory_allocated before it (module and "
                   "inputs excluded)" if cuda else
                   "peak RSS growth (VmHWM - VmRSS before) during one step in a child process that built the "
                   "module, after a warm-up step and malloc_trim (module and inputs excluded)"),
        "relative": "module / baseline at the same size (a ratio of 1.5 costs 1.5 baseline convolutions)",
        "ratio_forward": "visattn median / peer median (below 1: visattn is faster)",
    }
