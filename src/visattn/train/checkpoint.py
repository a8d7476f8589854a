"""Checkpoints written atomically and read back safely (``weights_only=True``), newest good one first."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_latest", "read_checkpoint", "checkpoint_paths", "atomic_write_text",
           "CorruptCheckpointWarning", "CheckpointError", "publish", "epoch_checkpoints"]

_NAME = re.compile(r"epoch-(\d+)\.pt$")


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint could not be read and was skipped."""


class CheckpointError(ValueError):
    """A file that is not a readable visattn checkpoint; the message is one line naming it."""


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "epoch")) -> dict[str, Any]:
    """Read checkpoint ``path`` as data only (``weights_only=True``): a dict with the ``required`` keys.

    Raises:
        CheckpointError: one line naming the file and why: unreadable, not written by ``torch.save``, holding
            Python objects beyond tensors and plain data (refused without running them), or not a dict with
            ``required``.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise CheckpointError(f"{path} is unreadable ({err.strerror or err})") from None
    except Exception as err:  # torch raises many types here; say what the file is, not torch's advice
        text = str(err)
        if "Unsupported global" in text or "GLOBAL" in text:  # a pickle that names code to run on loading
            why = "it holds Python objects beyond tensors and plain data, refused without running them"
        elif "Weights only load failed" in text or "zip" in text or isinstance(err, EOFError):
            why = "not a file torch.save wrote, or truncated / damaged"
        else:
            why = (text.strip().splitlines() or [""])[0][:120] or type(err).__name__
        raise CheckpointError(f"{path} is unreadable: not a visattn checkpoint ({why})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is unreadable: not a visattn checkpoint (it holds a {type(state).__name__}, "
                              "not a dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path} is unreadable: not a visattn checkpoint (no {', '.join(map(repr, missing))} "
                              "in it)")
    return state


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set back at once
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: Path) -> None:
    """Give the finished temporary file ``tmp`` the permissions a plain ``open()`` would, and rename it to ``path``.

    ``tempfile.mkstemp`` creates files readable by their owner only (0600); results and checkpoints
    should follow the umask like every other file the user writes.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def epoch_checkpoints(folder: Path) -> dict[int, Path]:
    """``{epoch: path}`` of the checkpoints in ``folder`` (``epoch-NNN.pt``), oldest epoch first."""
    if not folder.is_dir():
        return {}
    return dict(sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))))


def checkpoint_paths(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, newest epoch first."""
    return list(reversed(epoch_checkpoints(folder).values()))


def save_checkpoint(folder: Path, epoch: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Save ``state`` as ``folder/epoch-NNN.pt`` (temp file, fsync, rename) and keep the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch:03d}.pt"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in checkpoint_paths(folder)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path, required: tuple[str, ...] = ("model", "epoch"), *,
                report: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads (``weights_only=True``) and has the ``required`` keys.

    A checkpoint that fails is reported in one line naming the file, the reason and what is used instead
    (the previous checkpoint, or none), through ``report`` when given, else as a
    :class:`CorruptCheckpointWarning`. Returns None when no good checkpoint exists.
    """
    paths = checkpoint_paths(folder)
    for i, path in enumerate(paths):
        try:
            return read_checkpoint(path, required), path
        except CheckpointError as err:
            then = f"trying the previous one, {paths[i + 1].name}" if i + 1 < len(paths) else \
                "no earlier checkpoint, starting from scratch"
            message = f"{err}; {then}"
            if report is not None:
                report(message)
            else:
                warnings.warn(message, CorruptCheckpointWarning, stacklevel=2)
    return None
