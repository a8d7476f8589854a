"""What every sub-command shares: the one-line error, the help layout, common options and argument types.

Nothing here imports a sub-command or a library beyond :mod:`visattn.spec` (lazily), so every file of
:mod:`visattn.cli` can import it.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

__all__ = ["CLIError", "HelpFormatter", "ArgumentParser", "add_device_argument", "add_quiet_argument",
           "check_out_dir", "module_list", "clean_message", "bounded", "int_list", "number_range", "check_device",
           "run_library"]


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


#: "--wd -1e-4": argparse before 3.13 takes only -1 / -1.5 for negative numbers and "-1e-4" for an option;
#: no visattn option starts with a digit, so every "-<digit>" token is a value.
_NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with visattn's manners.

    A usage error is one line naming the command, with a pointer to its ``--help`` (not the whole usage),
    exit status 2; a token ``-<digit>...`` is always a value.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def add_device_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device``, the same on every sub-command: ``auto`` (CUDA when available, else CPU)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N "
                   "(default auto)")


def add_quiet_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-q`` / ``--quiet`` / ``--no-progress``, the same on every sub-command that reports progress."""
    p.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars or lines (plain results only)")


def check_device(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked before any data is loaded.

    Returns:
        The device as torch names it (``auto`` resolved).

    Raises:
        CLIError: an unknown device, or CUDA asked for where there is none.
    """
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise CLIError(f"--device: unknown device {text!r}; expected auto, cpu or cuda[:N]") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise CLIError(f"--device {text} is not supported; expected auto, cpu or cuda[:N]")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise CLIError(f"--device {text} requested but CUDA is not available ({why}, torch {torch.__version__})")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CLIError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return str(dev)


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


def module_list(text, *, allow_none: bool = False, patterns: bool = False, flag: str = "--attention"):
    """Parse the module grammar ``KEY[:ARG=VALUE],...`` (:mod:`visattn.spec`) into specs, or a :class:`CLIError`."""
    from ..spec import SpecError, parse_modules

    try:
        return parse_modules(text, allow_none=allow_none, patterns=patterns)
    except SpecError as err:
        raise CLIError(f"{flag}: {err}") from None


def clean_message(message: str) -> str:
    """A library message as the command line shows it: one ``visattn:`` prefix, CLI commands, not Python calls."""
    if "in DataLoader worker process" in message:  # torch's wrapper: the worker's traceback, then its own line
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = re.sub(r"^\w+(Error|Exception): ", "", last)
    message = re.sub(r"(?<![\w`.-])visattn: ", "", message)  # main() adds the one prefix, "visattn CMD: error:"
    if "`visattn.backbones.list_backbones()` lists all names" in message:
        from ..backbones import list_backbones

        message = message.replace("`visattn.backbones.list_backbones()` lists all names",
                                  f"Backbones: {', '.join(list_backbones())}")
    return (message.replace("`visattn.list_modules()` lists all keys", "`visattn list` shows the keys")
            .replace("visattn.list_modules()", "visattn list"))


def run_library(fn):
    """Call ``fn()``; the library's user-facing errors (bad values, missing files and data) become one line."""
    from ..data import DatasetNotFoundError
    from ..data.idx import IdxFormatError

    try:
        return fn()
    except (DatasetNotFoundError, IdxFormatError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    except ImportError as err:  # an optional package (timm, Pillow...) a requested option needs: one line
        text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise CLIError(text) from None
    except (ValueError, TypeError, KeyError) as err:
        raise CLIError(err.args[0] if err.args else repr(err)) from None


# -- argument types -----------------------------------------------------------------------------------------
_KIND_NAMES = {int: "integer", float: "number"}


def bounded(kind: type = int, minimum: float = 1, *, strict: bool = False, what: str | None = None):
    """The one numeric argparse type: a ``kind`` (int or float) ``>= minimum`` (``> minimum`` with ``strict``).

    Args:
        kind: ``int`` or ``float``.
        minimum: the smallest value accepted (excluded with ``strict``).
        strict: refuse ``minimum`` itself (``bounded(float, 0, strict=True)``: a positive number).
        what: how the message names the value (default: ``a positive integer``, ``an integer >= 1``,
            ``a float >= 0``, ...).

    Returns:
        A function ``str -> kind`` that raises :class:`argparse.ArgumentTypeError` with one clear line.

    Example:
        >>> bounded(int, 1)("3")
        3
    """
    if what is None:
        name = kind.__name__ if kind is float else _KIND_NAMES[kind]
        article = "an" if name[0] in "aeiou" else "a"
        if strict and minimum == 0 or kind is int and minimum == 1 and not strict:
            what = f"a positive {name}"
        else:
            what = f"{article} {name} {'>' if strict else '>='} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum):  # NaN fails both
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = _KIND_NAMES.get(kind, kind.__name__)  # argparse names the type in "invalid X value"
    return parse


def int_list(text: str) -> list[int]:
    """``1,2,3`` -> ``[1, 2, 3]`` (an argparse type)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def number_range(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` -> two floats (an argparse type; order is the library's to check)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two numbers), got {text!r}") from None
    return lo, hi
