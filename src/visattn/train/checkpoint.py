"""Checkpoints written atomically and read back safely (``weights_only=True``), newest good one first."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_latest", "checkpoint_paths", "atomic_write_text", "CorruptCheckpointWarning"]

_NAME = re.compile(r"epoch-(\d+)\.pt$")


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint could not be read and was skipped."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_paths(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, newest epoch first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in checkpoint_paths(folder)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path, required: tuple[str, ...] = ("model", "epoch")) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads (``weights_only=True``) and has the ``required`` keys.

    A checkpoint that fails is reported with a :class:`CorruptCheckpointWarning` naming the file and the
    reason, and the previous one is tried. Returns None when no good checkpoint exists.
    """
    for path in checkpoint_paths(folder):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing = [k for k in required if k not in state]
            if missing:
                raise ValueError(f"missing {missing}")
            return state, path
        except Exception as err:  # any unreadable file: torch raises many different types here
            warnings.warn(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
                          "trying the previous one", CorruptCheckpointWarning, stacklevel=2)
    return None
