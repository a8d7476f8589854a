"""Progress on stderr while the benchmark runs: a rich bar on a terminal, else one plain line per step."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Reports each finished measurement; silent when ``enabled`` is false.

    Args:
        total: number of steps.
        enabled: show anything at all.
        stream: where plain lines go (stderr).
    """

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self._rich = None
        if enabled and self.stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
                from rich.progress import Progress as RichProgress
            except ImportError:
                pass
            else:
                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=Console(file=self.stream))
                self._task = self._rich.add_task("visattn bench", total=total)
                self._rich.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_total(self, total: int) -> None:
        """Number of steps, once known."""
        self.total = total
        if self._rich is not None:
            self._rich.update(self._task, total=total)

    def start(self, label: str) -> None:
        """A step begins (shown in the bar's description)."""
        if self._rich is not None:
            self._rich.update(self._task, description=label)

    def finish(self, label: str, detail: str) -> None:
        """A step ended with ``detail`` (its headline numbers or why it was skipped)."""
        self.done += 1
        if not self.enabled:
            return
        line = f"[{self.done}/{self.total}] {label}: {detail}"
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False)
            self._rich.advance(self._task)
        else:
            print(line, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line that is not a step (a warning)."""
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
