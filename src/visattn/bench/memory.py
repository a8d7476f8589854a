"""Peak memory of one forward (or forward+backward) step.

CUDA: ``torch.cuda.max_memory_allocated`` during one step, minus what was allocated before it (the
module, its inputs and, for training, the kept upstream gradient).

CPU: the growth of the resident set size (RSS) during one step, measured in a child process that builds
the module itself, so the parent's own allocations (timing runs, other modules) do not blur it. The
child runs the step once to warm up, drops that step's gradients, returns freed memory to the OS
(``malloc_trim``), resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux), runs the step
again and reports ``VmHWM - VmRSS before``. glibc's mmap threshold is pinned at 64 KiB in the child so
large buffers are mapped and unmapped rather than recycled inside the heap, where reuse would hide them
from the RSS.
The kernel's RSS counters are approximate (per-CPU caches of up to 64 pages), so CPU numbers are good
to a few hundred KiB: meaningful for megabytes, noise for modules that allocate less.

The child is ``python -c "...; _child_main(FD)"``: it reads one JSON request per line on stdin and
answers one JSON line on the file descriptor ``FD``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable

import torch

from .measure import forward_step, training_step
from .subjects import Spec, build_subject

__all__ = ["cuda_peak_bytes", "CpuMemoryProbe"]

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_CHILD_CODE = "import sys; from visattn.bench.memory import _child_main; _child_main(int(sys.argv[1]))"


def cuda_peak_bytes(run: Callable[[], None], device: str) -> int:
    """Bytes allocated on ``device`` at the peak of one call of ``run`` beyond what was allocated before it."""
    run()  # warm-up: lazy buffers (cuBLAS workspaces, the kept upstream gradient) are made here
    getattr(run, "clear_grads", lambda: None)()  # the step's gradients count in its peak
    torch.cuda.synchronize(device)
    gc.collect()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - base)


# ---------------------------------------------------------------- child side


def _status_kib(field: str) -> int:
    with open(_STATUS) as f:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} in {_STATUS}")
    return int(match.group(1)) * 1024


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rss_growth(run: Callable[[], None]) -> int:
    run()
    getattr(run, "clear_grads", lambda: None)()  # the step's gradients count in its peak
    gc.collect()
    _trim()
    base = _status_kib("VmRSS")
    with open(_CLEAR_REFS, "w") as f:
        f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    run()
    return max(0, _status_kib("VmHWM") - base)


def _measure(request: dict) -> dict:
    if not os.path.exists(_CLEAR_REFS):
        return {"error": "peak RSS is measured with Linux's /proc/self/clear_refs, not available here"}
    torch.set_num_threads(int(request["threads"]))
    spec = Spec.from_json(request["spec"])
    try:
        module, inputs = build_subject(spec)
        if request.get("compile"):
            module = torch.compile(module)
        result = {"forward": _rss_growth(forward_step(module, inputs))}
        if request.get("backward"):
            result["forward_backward"] = _rss_growth(training_step(module, inputs))
    except Exception as err:  # reported to the parent, which records it next to the measurement
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        module = inputs = None  # noqa: F841
        gc.collect()
        _trim()
    return result


def _child_main(fd: int) -> None:
    torch.set_flush_denormal(True)
    with os.fdopen(fd, "w", buffering=1) as answers:
        for line in sys.stdin:
            if line.strip():
                answers.write(json.dumps(_measure(json.loads(line))) + "\n")


# ---------------------------------------------------------------- parent side


class CpuMemoryProbe:
    """A child process that builds a module from a :class:`Spec`, runs it and reports its peak RSS growth.

    Started on the first request and kept for the next ones (one ``import torch`` per benchmark); a child
    that dies is reported in the answer and started afresh for the next request. The parent waits for each
    answer, so the child never runs while the parent times something.

    Example:
        >>> with CpuMemoryProbe(threads=1) as probe:  # doctest: +SKIP
        ...     probe.measure(Spec("module", "se", 64, (16, 16), 2))
        {'forward': 1052672, 'forward_backward': None, 'note': None}
    """

    def __init__(self, threads: int | None = None, timeout: float = 900.0):
        self.threads = threads or torch.get_num_threads()
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._answers = None
        self._log = None

    def __enter__(self) -> CpuMemoryProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(self.threads),
                   PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE, str(write_fd)], stdin=subprocess.PIPE,
                stdout=self._log, stderr=self._log, pass_fds=(write_fd,), env=env, text=True)
        finally:
            os.close(write_fd)
        self._answers = os.fdopen(read_fd, "r")

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def measure(self, spec: Spec, *, backward: bool = False, compile: bool = False) -> dict:
        """Peak RSS growth in bytes of one forward (and one training step when ``backward``).

        Returns:
            ``{"forward": int | None, "forward_backward": int | None, "note": str | None}``; the note says
            why a number is missing.
        """
        if self._proc is None:
            self._start()
        request = {"spec": spec.to_json(), "backward": backward, "compile": compile, "threads": self.threads}
        answer: dict
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._answers], [], [], self.timeout)
            line = self._answers.readline() if ready else None
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            answer = json.loads(line)
        else:
            reason = "timed out" if line is None else f"exited with code {self._proc.poll()}"
            tail = self._log_tail()
            answer = {"error": f"memory child {reason}" + (f": {tail}" if tail else "")}
            self.close()
        return {"forward": answer.get("forward"), "forward_backward": answer.get("forward_backward"),
                "note": answer.get("error")}

    def close(self) -> None:
        """Stop the child (it exits when its stdin closes)."""
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        for handle in (self._answers, self._log):
            if handle is not None:
                handle.close()
        self._answers = self._log = None
