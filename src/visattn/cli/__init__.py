"""The ``visattn`` command: every argument parser, one file per sub-command.

This package only parses arguments, calls the library (:mod:`visattn.train`, :mod:`visattn.bench`,
:mod:`visattn.viz`, :mod:`visattn.demo`) and formats its errors as one line with exit status 2. Each
sub-command's file exposes ``add_parser(subparsers)``; its parser's ``func`` runs it.

Example:
    >>> from visattn.cli import build_parser
    >>> build_parser().parse_args(["list", "--role", "plugin"]).role
    'plugin'
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .common import (
    ArgumentParser,
    CLIError,
    HelpFormatter,
    add_device_argument,
    add_quiet_argument,
    check_out_dir,
    clean_message,
    module_list,
)

__all__ = ["main", "build_parser", "CLIError", "HelpFormatter", "add_device_argument", "add_quiet_argument",
           "check_out_dir", "clean_message", "module_list", "SUBCOMMANDS"]

#: The files of the sub-commands, in the order ``visattn --help`` lists them (``list`` is in ``listing.py``, so
#: that no attribute of this package hides the built-in ``list``).
SUBCOMMANDS = ("listing", "info", "demo", "bench", "train", "compare", "ablate", "show", "predict", "export")


def build_parser() -> ArgumentParser:
    """The ``visattn`` parser with every sub-command."""
    parser = ArgumentParser(prog="visattn", description="Visual attention modules: list, inspect, benchmark, "
                            "train, compare and show them.")
    parser.add_argument("--version", action="version", version=f"visattn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visattn`` command; returns the exit status (usage errors exit 2 through argparse)."""
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
