"""``visattn bench``: argument parsing and output files; the measuring is in :mod:`.runner`."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from ..cli import CLIError, add_device_argument, add_quiet_argument, module_list
from .environment import cpu_model
from .plots import MISSING_MATPLOTLIB, have_matplotlib, plot_overhead, plot_scaling
from .progress import Progress
from .report import print_table, write_csv, write_json, write_markdown
from .runner import BenchConfig, run_bench
from .subjects import BASELINES, DTYPES

__all__ = ["add_parser", "cmd_bench"]

_EPILOG = """\
examples:
  visattn bench se cbam --size 28 --size 56
  visattn bench se,se:reduction=4,sge:groups=8 --size 28     (the module grammar: KEY[:ARG=VALUE...], commas)
  visattn bench all --channels 256 --size 14 --size 28 --size 56 --batch 8 --out benchmarks/results/bench-cpu
  visattn bench 'c*' --device cuda --dtype bfloat16 --channels-last --backward --peers
"""


def _int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


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
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("keys", nargs="*", metavar="KEY[:ARG=VALUE...]",
                   help="modules: registry keys with arguments if wanted (sge:groups=8), space- or comma-separated; "
                   "fnmatch patterns ('c*') or 'all' (default: all)")
    p.add_argument("--channels", type=_int(1), default=256, help="input channels C (default 256)")
    p.add_argument("--size", dest="sizes", action="append", type=_size, metavar="N|HxW",
                   help="feature size; repeat for several (default 56)")
    p.add_argument("--batch", type=_int(1), default=8, help="batch size (default 8)")
    add_device_argument(p)
    p.add_argument("--dtype", type=_dtype, default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--channels-last", action="store_true", help="modules and inputs in channels_last")
    p.add_argument("--compile", action="store_true", help="time torch.compile(module)")
    p.add_argument("--backward", action="store_true", help="also time forward+backward (train mode)")
    p.add_argument("--repeat", type=_int(1), default=20, help="timed calls per measurement (default 20)")
    p.add_argument("--warmup", type=_int(0), default=3, help="untimed calls before them (default 3)")
    p.add_argument("--max-time", type=_seconds, default=None, metavar="SECONDS",
                   help="stop timing a measurement early once its calls add up to SECONDS (at least 3 calls)")
    p.add_argument("--threads", type=_int(1), default=None, help="torch.set_num_threads (default: torch's)")
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
    p.set_defaults(func=cmd_bench)


def _resolve_keys(tokens: list[str]) -> list[str]:
    """The modules to measure, each in its canonical grammar spelling (``se``, ``sge:groups=8``)."""
    return [spec.text for spec in module_list(tokens or ["all"], patterns=True, flag="KEY")]


def _check_device(text: str) -> str:
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise CLIError(f"unknown device {text!r}; expected cpu or cuda[:N]") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise CLIError(f"device {text!r} is not supported; expected cpu or cuda[:N]")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise CLIError(f"--device {text} requested but CUDA is not available ({why}, torch {torch.__version__})")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CLIError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return str(dev)


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


def cmd_bench(args: argparse.Namespace) -> int:
    keys = _resolve_keys(args.keys)
    device = _check_device(args.device)
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
