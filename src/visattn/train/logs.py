"""Logs a dashboard reads: per-update and per-epoch metrics as CSV and JSONL, and TensorBoard on request.

Files in the run folder::

    steps.csv, steps.jsonl       one row per optimiser update: epoch, step, train_loss, lr, images_per_s
    metrics.csv, metrics.jsonl   one row per finished epoch (validation metrics when it was evaluated)
    tensorboard/                 event files (``tensorboard=True``; needs the tensorboard package)

A resumed run first cuts every file back to the epoch its checkpoint holds, so no row is written twice.
Only the process that writes (rank 0) makes a :class:`RunLog`; the others log nothing.

Example:
    >>> import tempfile, json, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with RunLog(folder) as log:
    ...     log.step({"epoch": 1, "step": 1, "train_loss": 2.3, "lr": 0.1})
    ...     log.epoch({"epoch": 1, "train_loss": 2.3, "val_loss": 2.2, "val_acc": 12.5})
    >>> (folder / "steps.csv").read_text().splitlines()[0]
    'epoch,step,train_loss,lr'
    >>> json.loads((folder / "metrics.jsonl").read_text())["val_acc"]
    12.5
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text
from .recipe import MissingExtraError

__all__ = ["RunLog", "read_jsonl", "truncate_logs", "tensorboard_available", "STEP_FILES", "EPOCH_FILES",
           "TENSORBOARD_MISSING"]

STEP_FILES = ("steps.jsonl", "steps.csv")
TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install 'visattn[tensorboard]'"
EPOCH_FILES = ("metrics.jsonl", "metrics.csv")


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write event files (the tensorboard package is installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def truncate_logs(folder: str | Path, last_epoch: int) -> None:
    """Keep only the rows of epochs ``<= last_epoch`` in every log file of ``folder`` (a resume's first step).

    The CSV files are rewritten from their JSONL twins, so the two always hold the same rows.
    """
    folder = Path(folder)
    for jsonl, csv_name in (STEP_FILES, EPOCH_FILES):
        path = folder / jsonl
        if not path.exists():
            continue
        rows = [row for row in read_jsonl(path) if row["epoch"] <= last_epoch]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
        atomic_write_text(folder / csv_name, _csv_text(rows) if rows else "")


class RunLog:
    """Appends step and epoch records to the run folder's CSV / JSONL files, and to TensorBoard if asked.

    Args:
        folder: the run folder.
        resume_epoch: the epoch a resumed run's checkpoint holds; rows after it are dropped first (0: a new
            run, whose files start empty).
        tensorboard: also write TensorBoard event files under ``folder/tensorboard``.

    Raises:
        MissingExtraError: ``tensorboard=True`` and the tensorboard package is not installed (one line).
    """

    def __init__(self, folder: str | Path, resume_epoch: int = 0, *, tensorboard: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        truncate_logs(self.folder, resume_epoch)
        self._columns = {name: self._header(name) for name in (STEP_FILES[1], EPOCH_FILES[1])}
        self._writer = None
        if tensorboard:
            if not tensorboard_available():
                raise MissingExtraError(TENSORBOARD_MISSING)
            from torch.utils.tensorboard import SummaryWriter

            steps = read_jsonl(self.folder / STEP_FILES[0])
            # purge_step drops events a killed run wrote after its checkpoint, as the text logs do
            self._writer = SummaryWriter(str(self.folder / "tensorboard"),
                                         purge_step=(steps[-1]["step"] + 1) if steps else None)

    def _header(self, name: str) -> list[str] | None:
        path = self.folder / name
        if not path.exists() or not path.stat().st_size:
            return None
        with open(path, newline="") as f:
            return next(csv.reader(f), None)

    def _append(self, files: tuple[str, str], record: dict[str, Any]) -> None:
        jsonl, csv_name = files
        with open(self.folder / jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        columns = self._columns[csv_name]
        if columns is not None and not set(record) <= set(columns):  # a new column: rewrite with a wider header
            rows = read_jsonl(self.folder / jsonl)
            atomic_write_text(self.folder / csv_name, _csv_text(rows))
            self._columns[csv_name] = list(_csv_text(rows).splitlines()[0].split(","))
            return
        with open(self.folder / csv_name, "a", newline="") as f:
            if columns is None:
                columns = self._columns[csv_name] = list(record)
                csv.writer(f, lineterminator="\n").writerow(columns)
            csv.DictWriter(f, fieldnames=columns, lineterminator="\n").writerow(record)

    def step(self, record: dict[str, Any]) -> None:
        """One optimiser update: needs ``epoch`` and ``step`` (the update's global number, from 1)."""
        self._append(STEP_FILES, record)
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"train/{key}", value, record["step"])

    def epoch(self, record: dict[str, Any], step: int | None = None) -> None:
        """One finished epoch: needs ``epoch``; TensorBoard places it at update ``step`` (default: the epoch)."""
        self._append(EPOCH_FILES, record)
        if self._writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"epoch/{key}", value, record["epoch"] if step is None else step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
