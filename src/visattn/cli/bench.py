"""``visattn bench``: argument parsing and output files; the measuring is in :mod:`visattn.bench.runner`."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from ..bench.environment import cpu_model
from ..bench.plots import MISSING_MATPLOTLIB, have_matplotlib, plot_overhead, plot_scaling
from ..bench.progress import Progress
from ..bench.report import print_table, write_csv, write_json, write_markdown
from ..bench.runner import BenchConfig, run_bench
from ..bench.subjects import BASELINES, DTYPES
from .common import CLIError, add_device_argument, add_quiet_argument, bounded, check_device, module_list

__all__ = ["add_parser"]

_EPILOG = """\
examples:
  visattn bench se cbam --size 28 --size 56
  visattn bench se,se:reduction=4,sge:groups=8 --size 28     (the module grammar: KEY[:ARG=VALUE...], commas)
  visattn bench all --channels 256 --size 14 --size 28 --size 56 --batch 8 --out benchmarks/results/bench-cpu
  visattn bench 'c*' --device cuda --dtype bfloat16 --channels-last --backward --peers
"""


_at_least_one = bounded(int, 1, what="an integer >= 1")
_seconds = bounded(float, 0, strict=True, what="a positive number of seconds")


def _size(text: str) -> tuple[int, int]:
    """``56`` -> (56, 56); ``28x40`` -> (28, 40); both positive."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, N or HxW, got {text!r}")
    return (values[0], values[-1])


def _dtype(text: str) -> str:
    if text.lower() not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; expected float32, bfloat16 or float16")
    return str(DTYPES[text.lower()]).replace("torch.", "")


def add_parser(subparsers) -> None:
    """Add the ``bench`` sub-command to ``visattn``'s parser."""
    p = subparsers.add_parser(
        "bench", help="parameters, FLOPs, latency, peak memory and scaling of modules",
        description="Measure modules against a 3x3 convolution of the same width: parameters, FLOPs, forward "
                    "(and forward+backward) time as median and p10/p90, peak memory; with several sizes, how "
                    "time and memory scale with H*W.",
        epilog=_EPILOG)
    p.add_argument("keys", nargs="*", metavar="KEY[:ARG=VALUE...]",
                   help="modules: registry keys with arguments if wanted (sge:groups=8), space- or comma-separated; "
                   "fnmatch patterns ('c*') or 'all' (default: all)")
    p.add_argument("--channels", type=_at_least_one, default=256, help="input channels C (default 256)")
    p.add_argument("--size", dest="sizes", action="append", type=_size, metavar="N|HxW",
                   help="feature size; repeat for several (default 56)")
    p.add_argument("--batch", type=_at_least_one, default=8, help="batch size (default 8)")
    add_device_argument(p)
    p.add_argument("--dtype", type=_dtype, default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--channels-last", action="store_true", help="modules and inputs in channels_last")
    p.add_argument("--compile", action="store_true", help="time torch.compile(module)")
    p.add_argument("--backward", action="store_true", help="also time forward+backward (train mode)")
    p.add_argument("--repeat", type=_at_least_one, default=20, help="timed calls per measurement (default 20)")
    p.add_argument("--warmup", type=bounded(int, 0), default=3, help="untimed calls before them (default 3)")
    p.add_argument("--max-time", type=_seconds, default=None, metavar="SECONDS",
                   help="stop timing a measurement early once its calls add up to SECONDS (at least 3 calls)")
    p.add_argument("--threads", type=_at_least_one, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--baseline", default="conv3x3", choices=[*BASELINES, "none"],
                   help="what costs are relative to (default conv3x3: Conv2d(C, C, 3, padding=1, bias=False))")
    p.add_argument("--peers", action="store_true", help="also time timm / torchvision versions (ratio visattn/peer)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--csv", metavar="PATH", help="write one CSV row per measurement")
    p.add_argument("--md", metavar="PATH", help="write a Markdown summary table")
    p.add_argument("--plot", metavar="PATH.png",
                   help="write PATH-scaling.png (log-log time and memory vs H*W, needs 2+ sizes) and "
                        "PATH-overhead.png (time relative to the baseline); needs matplotlib")
    p.add_argument("--out", metavar="PREFIX",
                   help="all of the above: PREFIX.json, .csv, .md, PREFIX-scaling.png, PREFIX-overhead.png "
                        "(plots only when matplotlib is installed)")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def _resolve_keys(tokens: list[str]) -> list[str]:
    """The modules to measure, each in its canonical grammar spelling (``se``, ``sge:groups=8``)."""
    return [spec.text for spec in module_list(tokens or ["all"], patterns=True, flag="KEY")]


def _outputs(args: argparse.Namespace) -> dict[str, str | None]:
    out = {"json": args.json, "csv": args.csv, "md": args.md, "plot": args.plot}
    if args.out:
        prefix = args.out[:-5] if args.out.endswith(".json") else args.out
        for kind, ext in (("json", ".json"), ("csv", ".csv"), ("md", ".md"), ("plot", ".png")):
            out[kind] = out[kind] or prefix + ext
    for path in out.values():
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as err:
                raise CLIError(f"cannot write to {folder}: {err.strerror}") from None
    return out


def _plot_paths(path: str) -> tuple[str, str]:
    stem = path[:-4] if path.lower().endswith(".png") else path
    return f"{stem}-scaling.png", f"{stem}-overhead.png"


def run(args: argparse.Namespace) -> int:
    keys = _resolve_keys(args.keys)
    device = check_device(args.device)
    if args.plot and not have_matplotlib():
        raise CLIError(f"--plot: {MISSING_MATPLOTLIB}")
    outputs = _outputs(args)
    sizes = list(dict.fromkeys(args.sizes or [(56, 56)]))
    cfg = BenchConfig(
        keys=keys, channels=args.channels, sizes=sizes, batch=args.batch, device=device, dtype=args.dtype,
        channels_last=args.channels_last, compile=args.compile, backward=args.backward, repeat=args.repeat,
        warmup=args.warmup, baseline=None if args.baseline == "none" else args.baseline, peers=args.peers,
        memory=not args.no_memory, threads=args.threads, max_time=args.max_time)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = Progress(0, enabled=not args.quiet)  # -q / --quiet / --no-progress
    where = torch.cuda.get_device_name(device) if device != "cpu" else cpu_model()
    progress.note(f"visattn bench: {len(keys)} module(s) x {len(sizes)} size(s), C={args.channels}, batch "
                  f"{args.batch}, {args.dtype} on {device} ({where}, threads: {torch.get_num_threads()}), "
                  f"torch {torch.__version__}")
    try:
        report = run_bench(cfg, progress=progress)
    finally:
        progress.close()

    images: dict[str, str] = {}
    if outputs["plot"]:
        if have_matplotlib():
            scaling, overhead = _plot_paths(outputs["plot"])
            if len(sizes) > 1:
                plot_scaling(report, scaling)
                images["Scaling with H x W"] = scaling
            else:
                print("visattn bench: one size only, no scaling plot (give --size twice or more)", file=sys.stderr)
            if cfg.baseline:
                plot_overhead(report, overhead)
                images[f"Time relative to {cfg.baseline}"] = overhead
        else:
            print(f"visattn bench: no plots: {MISSING_MATPLOTLIB}", file=sys.stderr)
    if outputs["json"]:
        write_json(report, outputs["json"])
    if outputs["csv"]:
        write_csv(report, outputs["csv"])
    if outputs["md"]:
        write_markdown(report, outputs["md"], images)
    print_table(report)
    written = [p for p in (outputs["json"], outputs["csv"], outputs["md"], *images.values()) if p]
    if written:
        print("wrote " + ", ".join(written), file=sys.stderr)
    errors = [r for r in report["results"] if r["status"] == "error"]
    if errors:
        for r in errors:
            print(f"visattn bench: {r['key']} {r['size'][0]}x{r['size'][1]} failed: {r['reason']}", file=sys.stderr)
        return 1
    return 0
