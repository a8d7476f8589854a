"""The ``visattn`` command. It only parses arguments and calls the library.

Sub-commands: ``list``, ``info``, ``demo`` here; ``bench``, ``train``, ``compare``, ``ablate`` and
``show`` are contributed by their packages through ``add_parser(subparsers)`` functions, so this
file stays a thin table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .registry import ROLES, info, list_modules

#: sub-command providers: module path -> each exposes add_parser(subparsers)
_PROVIDERS = ("visattn.bench.cli", "visattn.train.cli", "visattn.viz.cli")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it already says it); examples keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.nargs == 0 or action.default is argparse.SUPPRESS:
            return text
        if "default" in text.lower():
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default)) or "none"
        return f"{text} (default: {'none' if default is None else default})".lstrip()


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device``, the same on every sub-command: ``auto`` (CUDA when available, else CPU)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N "
                   "(default auto)")


def add_quiet_argument(p: argparse.ArgumentParser) -> None:
    """``-q`` / ``--quiet`` / ``--no-progress``, the same on every sub-command that reports progress."""
    p.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars or lines (plain results only)")


def check_out_dir(path: str | os.PathLike | None, flag: str = "--out") -> None:
    """Refuse an output folder that is, or lies under, an existing file (:class:`CLIError`)."""
    if path is None:
        return
    target = Path(path)
    for place in (target, *target.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                what = "is a file" if place == target else f"lies under {place}, which is a file"
                raise CLIError(f"{flag} {path} {what}; give a folder")
            return


def module_list(text: str, *, allow_none: bool = False, patterns: bool = False, flag: str = "--attention"):
    """Parse the module grammar ``KEY[:ARG=VALUE],...`` (:mod:`visattn.spec`) into specs, or a :class:`CLIError`."""
    from .spec import SpecError, parse_modules

    try:
        return parse_modules(text, allow_none=allow_none, patterns=patterns)
    except SpecError as err:
        raise CLIError(f"{flag}: {err}") from None


def clean_message(message: str) -> str:
    """A library message as the command line shows it: one ``visattn:`` prefix, CLI commands, not Python calls."""
    message = re.sub(r"(?<![\w`.-])visattn: ", "", message)  # main() adds the one prefix, "visattn CMD: error:"
    if "`visattn.backbones.list_backbones()` lists all names" in message:
        from .backbones import list_backbones

        message = message.replace("`visattn.backbones.list_backbones()` lists all names",
                                  f"Backbones: {', '.join(list_backbones())}")
    return (message.replace("`visattn.list_modules()` lists all keys", "`visattn list` shows the keys")
            .replace("visattn.list_modules()", "visattn list"))


def _module_rows(keys: Sequence[str]) -> list[dict]:
    rows = []
    for key in keys:
        m = info(key)
        rows.append({
            "key": key, "module": m.cls.__name__, "title": m.title, "paper": m.citation, "year": m.year,
            "role": m.role, "domain": m.domain, "complexity": m.complexity, "parameter_free": m.parameter_free,
        })
    return rows


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _module_rows(list_modules(args.pattern, role=args.role))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            r["parameter_free"] = "yes" if r["parameter_free"] else ""
        _print_table(rows, ["key", "module", "paper", "year", "role", "domain", "complexity", "parameter_free"])
        print(f"\n{len(rows)} modules")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import visattn

    specs = module_list(args.key, flag="KEY")
    if len(specs) != 1:
        raise CLIError(f"one module at a time, got {len(specs)}: {args.key}")
    spec = specs[0]
    m = info(spec.key)
    kwargs = spec.kwargs_dict()
    if m.size_bound:
        kwargs.setdefault("feature_size", (args.size, args.size))
    try:
        module = visattn.create(spec.key, args.channels, **kwargs)
    except (ValueError, TypeError) as err:
        raise CLIError(f"{spec.text} at --channels {args.channels}: {err}") from None
    n_params = sum(p.numel() for p in module.parameters())
    fields = {
        "key": m.key, "class": f"{m.cls.__module__}.{m.cls.__name__}", "title": m.title, "paper": m.paper,
        "citation": m.citation, "arxiv": m.paper_url, "official code": m.code, "family": m.family,
        "domain": m.domain, "weights computed by": m.weights, "weights applied by": m.applied, "role": m.role,
        "complexity": m.complexity, "parameter-free": m.parameter_free, "size-bound": m.size_bound,
        "defaults": {k: repr(v) for k, v in m.defaults.items()},
        "arguments given": {k: repr(v) for k, v in spec.kwargs},
        f"parameters at C={args.channels}": n_params, "paper vs official code": m.note,
    }
    if args.json:
        print(json.dumps(fields, indent=2, default=str))
        return 0
    width = max(len(k) for k in fields)
    for k, v in fields.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "-"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        print(f"{k.rjust(width)}  {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    check_out_dir(args.out)
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visattn", description="Visual attention modules: list, inspect, "
                                     "benchmark, train, compare and show them.")
    parser.add_argument("--version", action="version", version=f"visattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list the registered modules")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern on keys, e.g. 'c*'")
    p.add_argument("--role", choices=ROLES, help="only modules of this role")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="metadata, defaults and parameter count of one module")
    p.add_argument("key", metavar="KEY[:ARG=VALUE...]", help="registry key, with module arguments if wanted, "
                   "e.g. sge:groups=8")
    p.add_argument("--channels", type=_positive_int, default=256, help="channels for the parameter count")
    p.add_argument("--size", type=_positive_int, default=14, help="feature size for size-bound modules")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="the main job on Fashion-MNIST (what `make demo` runs)")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST idx .gz files, used exactly as given "
                   "(default: $VISATTN_DATA, else searched)")
    p.add_argument("--epochs", type=_positive_int, default=3, help="epochs per run")
    p.add_argument("--train-limit", type=_positive_int, default=10000, help="training images per run")
    p.add_argument("--val-limit", type=_positive_int, default=2000, help="test images per run")
    p.add_argument("--out", default="runs/demo", help="where the runs and the leaderboard go")
    p.add_argument("--jobs", type=_positive_int, default=None, help="training runs at once (default: 2 on a "
                   "CPU-only machine with 2+ cores, one thread each; else 1)")
    p.set_defaults(func=cmd_demo)

    for provider in _PROVIDERS:
        try:
            mod = importlib.import_module(provider)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("visattn"):
                continue  # that tool is not built yet
            raise
        mod.add_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
        # "--wd -1e-4": argparse before 3.13 takes only -1 / -1.5 for negative numbers and "-1e-4" for an
        # option; no visattn option starts with a digit, so every "-<digit>" token is a value.
        command._negative_number_matcher = _NEGATIVE_NUMBER
    return parser


_NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visattn`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to repeat the command (e.g. to resume)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"visattn {args.command}: error: {clean_message(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"visattn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `visattn list | head`: the reader left; say nothing more
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not complain
        except (OSError, ValueError):
            pass
        return 0

