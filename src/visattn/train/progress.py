"""Progress display: rich bars on a terminal, plain periodic lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time

__all__ = ["EpochProgress"]


class EpochProgress:
    """Per-epoch bar with loss and throughput; ``enabled=False`` on ranks other than 0."""

    def __init__(self, total_epochs: int, enabled: bool = True, stream=None):
        self.total_epochs = total_epochs
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._rich = None
        if enabled and self.stream.isatty():
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
                from rich.progress import Progress as RichProgress

                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            except ImportError:
                pass

    def __enter__(self) -> EpochProgress:
        if self._rich is not None:
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def start_epoch(self, epoch: int, batches: int) -> None:
        self._epoch, self._batches, self._seen, self._t0 = epoch, batches, 0, time.perf_counter()
        self._next_line = max(1, batches // 5)
        if self._rich is not None:
            self._task = self._rich.add_task(f"epoch {epoch}/{self.total_epochs}", total=batches, info="")

    def batch(self, index: int, loss: float, images: int) -> None:
        if not self.enabled:
            return
        self._seen += images
        rate = self._seen / max(1e-9, time.perf_counter() - self._t0)
        info = f"loss {loss:.4f}  {rate:,.0f} img/s"
        if self._rich is not None:
            self._rich.update(self._task, completed=index + 1, info=info)
        elif (index + 1) % self._next_line == 0 or index + 1 == self._batches:
            print(f"  epoch {self._epoch}/{self.total_epochs}  batch {index + 1}/{self._batches}  {info}",
                  file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(text)
        else:
            print(text, file=self.stream, flush=True)
