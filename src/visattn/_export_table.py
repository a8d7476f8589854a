"""Which registry keys pass each export path, checked on perturbed weights against eager, for docs/export.md.

Four paths are tried for every key (``scripts/gen_export_table.py`` runs them and writes the table):

- ``torch.compile(fullgraph=True)``: one graph, no graph breaks; the output compared with eager.
- ``torch.export`` with dynamic H and W (static for size-bound modules); the exported program run at a
  second size and compared with eager there.
- ONNX (``torch.onnx.export(dynamo=True)``, dynamic H and W) run in onnxruntime at a second size and compared.
- TorchScript: ``torch.jit.script``, or ``torch.jit.trace`` where scripting fails (the table says which and
  why); a trace is compared with eager at the traced size and at a second size.

Weights are perturbed first (every parameter and buffer gets noise), so that zero-initialised gates do not
hide an attention branch that exports wrongly.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import visattn

__all__ = ["CHECKS", "CheckResult", "perturbed_module", "sample_inputs", "check_key", "render_table",
           "EXPORT_DOC", "table_keys", "table_rows"]

CHECKS = ("compile", "export", "onnx", "torchscript")
EXPORT_DOC = Path("docs") / "export.md"
CHANNELS = 64
SIZE = (16, 16)
OTHER_SIZE = (12, 11)
ATOL = RTOL = 1e-4

_BEGIN, _END = "<!-- export-table:begin -->", "<!-- export-table:end -->"


@dataclass
class CheckResult:
    """One path for one key: ``ok`` (values match eager), ``how`` (a short qualifier) and ``why`` (a failure)."""

    ok: bool
    how: str = ""
    why: str = ""

    def cell(self) -> str:
        mark = "yes" if self.ok else "no"
        text = f"{mark} ({self.how})" if self.how else mark
        return text + (f": {self.why}" if self.why and not self.ok else "")


def perturbed_module(key: str, channels: int = CHANNELS, size: tuple[int, int] = SIZE,
                     seed: int = 1) -> torch.nn.Module:
    """``create(key)`` in eval mode with every float parameter and buffer perturbed by normal noise.

    Zero-initialised gates (gamma = 0, zero BN weights, zero last convs) get noise like everything else, so
    the attention branch shows in the output. Running variances get a random positive factor. STN's
    localisation output gets smaller noise (0.05): more moves its sampling window off the image.
    """
    meta = visattn.info(key)
    kwargs = {"feature_size": size} if meta.size_bound else {}
    module = visattn.create(key, channels, **kwargs)
    std = 0.05 if key == "stn" else 0.2
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
        for name, b in module.named_buffers():
            if b.is_floating_point():
                noise = torch.randn(b.shape, generator=g)
                if name.endswith("running_var"):
                    b.mul_(torch.exp(noise * 0.35))
                else:
                    b.add_(noise * std)
    return module.eval()


def sample_inputs(key: str, size: tuple[int, int], batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The forward's inputs at ``size``: ``(x,)``, or ``(x, g)`` for a gate (g on the 2x coarser grid)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    x = torch.randn(batch, CHANNELS, h, w, generator=g)
    if visattn.info(key).role == "gate":
        return x, torch.randn(batch, CHANNELS, -(-h // 2), -(-w // 2), generator=g)
    return (x,)


def _dynamic_shapes(key: str, module: torch.nn.Module):
    meta = visattn.info(key)
    if meta.size_bound:
        return None
    lo = max(4, int(getattr(module, "min_size", 1)))
    h, w = torch.export.Dim("H", min=lo, max=512), torch.export.Dim("W", min=lo, max=512)
    if meta.role == "gate":
        return ({2: h, 3: w}, {2: torch.export.Dim("Hg", min=2, max=256), 3: torch.export.Dim("Wg", min=2, max=256)})
    return ({2: h, 3: w},)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    text = re.sub(r"0x[0-9a-fA-F]+", "0x...", text)  # object addresses change from run to run
    return text[:160].replace("|", "/")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and max |a - b| <= ATOL + RTOL * max |b| (float32 rounding grows with the output's scale)."""
    return a.shape == b.shape and bool((a - b).abs().max() <= ATOL + RTOL * b.abs().max())


def _check_compile(key: str, module, inputs, backend: str) -> CheckResult:
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    with torch.no_grad():
        ok = _close(compiled(*inputs), module(*inputs))
    return CheckResult(ok, "" if backend == "inductor" else backend, "" if ok else "values differ from eager")


def _check_export(key: str, module, inputs, other) -> CheckResult:
    dyn = _dynamic_shapes(key, module)
    program = torch.export.export(module, inputs, dynamic_shapes=dyn)
    probe = other if dyn is not None else inputs
    with torch.no_grad():
        ok = _close(program.module()(*probe), module(*probe))
    return CheckResult(ok, "dynamic H, W" if dyn is not None else "static: size-bound",
                       "" if ok else "values differ from eager")


def _check_onnx(key: str, module, inputs, other) -> CheckResult:
    import onnxruntime as ort

    dyn = _dynamic_shapes(key, module)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, inputs, dynamo=True, dynamic_shapes=dyn, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probe = other if dyn is not None else inputs
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), probe, strict=True)}
    out = torch.from_numpy(session.run(None, feeds)[0])
    with torch.no_grad():
        ok = _close(out, module(*probe))
    return CheckResult(ok, "onnxruntime, dynamic H, W" if dyn is not None else "onnxruntime, static",
                       "" if ok else "values differ from eager")


def _check_torchscript(key: str, module, inputs, other) -> CheckResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scripted = torch.jit.script(module)
            with torch.no_grad():
                ok = _close(scripted(*inputs), module(*inputs))
            return CheckResult(ok, "script", "" if ok else "values differ from eager")
        except Exception as err:  # noqa: BLE001 - any scripting failure: fall back to tracing and say why
            script_error = _first_line(err)
        with torch.no_grad():
            try:
                traced = torch.jit.trace(module, inputs, check_trace=False)
            except Exception as err:  # noqa: BLE001 - neither path works: say why for both
                return CheckResult(False, "", f"script: {script_error}; trace: {_first_line(err)}")
            same = _close(traced(*inputs), module(*inputs))
            if not same:
                return CheckResult(False, "trace", f"script: {script_error}; trace: values differ")
            probe = other if not visattn.info(key).size_bound else inputs
            try:
                general = _close(traced(*probe), module(*probe))
            except Exception:  # noqa: BLE001 - a trace bound to its example size
                general = False
    how = "trace" if general else "trace, example size only"
    return CheckResult(True, how, script_error)


def check_key(key: str, *, backend: str = "inductor", checks: tuple[str, ...] = CHECKS) -> dict[str, CheckResult]:
    """Run the export ``checks`` for ``key`` on a perturbed module; a failure is recorded, never raised."""
    module = perturbed_module(key)
    inputs = sample_inputs(key, SIZE)
    other = sample_inputs(key, OTHER_SIZE, seed=1)
    results: dict[str, CheckResult] = {}
    for name in checks:
        try:
            if name == "compile":
                results[name] = _check_compile(key, module, inputs, backend)
            elif name == "export":
                results[name] = _check_export(key, module, inputs, other)
            elif name == "onnx":
                results[name] = _check_onnx(key, module, inputs, other)
            elif name == "torchscript":
                results[name] = _check_torchscript(key, module, inputs, other)
            else:
                raise ValueError(f"unknown check {name!r}; expected one of {CHECKS}")
        except ValueError:
            raise
        except Exception as err:  # noqa: BLE001 - the table records why a path fails
            results[name] = CheckResult(False, "", _first_line(err))
    return results


def render_table(results: dict[str, dict[str, CheckResult]], *, backend: str, versions: str) -> str:
    """The Markdown table (between markers) for ``results`` (key -> check -> result)."""
    head = ("| key | `torch.compile(fullgraph=True)` | `torch.export` | ONNX (onnxruntime) | TorchScript |\n"
            "|---|---|---|---|---|\n")
    rows = "".join(f"| `{key}` | " + " | ".join(results[key][c].cell() for c in CHECKS) + " |\n"
                   for key in sorted(results))
    passed = {c: sum(results[k][c].ok for k in results) for c in CHECKS}
    summary = ", ".join(f"{c} {passed[c]}/{len(results)}" for c in CHECKS)
    script_errors: dict[str, list[str]] = {}
    for key in sorted(results):
        ts = results[key].get("torchscript")
        if ts is not None and ts.ok and ts.why:
            script_errors.setdefault(ts.why, []).append(key)
    notes = "".join(f"\n- `torch.jit.script` fails for {_keys_text(keys, len(results))}: {why}; "
                    "`torch.jit.trace` is used instead." for why, keys in script_errors.items())
    return (f"{_BEGIN}\n_Generated by `scripts/gen_export_table.py` ({versions}; compile backend: {backend}). "
            f"Passing: {summary}._\n\n{head}{rows}{notes}\n{_END}")


def _keys_text(keys: list[str], total: int) -> str:
    return "every key" if len(keys) == total else ", ".join(f"`{k}`" for k in keys)


def table_rows(text: str) -> dict[str, str]:
    """Key -> its table row, from the generated table of ``text`` (docs/export.md)."""
    if _BEGIN not in text or _END not in text:
        return {}
    body = text.split(_BEGIN, 1)[1].split(_END, 1)[0]
    return {line.split("`")[1]: line for line in body.splitlines() if line.startswith("| `")}


def table_keys(text: str) -> list[str]:
    """The registry keys listed in the generated table of ``text`` (docs/export.md)."""
    return list(table_rows(text))

