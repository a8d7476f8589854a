"""Regenerate the export table in docs/export.md: compile, export, ONNX and TorchScript for every registry key.

Each key is built with perturbed weights and every path's output is compared with eager (see
``visattn._export_table``). Takes several minutes on one CPU thread (the inductor compiles dominate);
``--backend aot_eager`` checks graph capture only and is faster. Needs the ``export`` extra (onnx,
onnxscript, onnxruntime).

    OMP_NUM_THREADS=1 python scripts/gen_export_table.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import visattn
from visattn._export_table import CHECKS, EXPORT_DOC, check_key, render_table

INTRO = """# Export and compilation

Which registry keys pass each deployment path, tried on every key with **perturbed weights** (every
parameter and buffer, zero-initialised gates included, gets noise, so no attention branch hides behind a
zero gate) and **value-checked against eager PyTorch** (max |difference| <= 1e-4 (1 + max |eager output|)):

- `torch.compile(fullgraph=True)`: one graph with no breaks, run and compared with eager.
- `torch.export` with dynamic H and W (`Dim` from max(4, `min_size`) to 512; static for the size-bound
  keys `psa`, `rga_s`, `rga_c`), exported at 16 x 16 and run at 12 x 11.
- ONNX: `torch.onnx.export(dynamo=True)` with the same dynamic H and W, run in onnxruntime at 12 x 11.
- TorchScript: `torch.jit.script` where it compiles, else `torch.jit.trace` (the table says which);
  a trace is checked at the traced size and at a second size ("example size only" when it is bound to the
  traced shape). TorchScript is deprecated in PyTorch 2.x; prefer `torch.export` / ONNX.

**TorchScript scripting is not supported.** `torch.jit.script` fails on every module: visattn's modules are
written for eager PyTorch and `torch.compile` / `torch.export`, with Python that the TorchScript compiler
does not accept (keyword-only arguments with defaults in the shared input checks, `Callable` and
`nn.Module` annotations, iteration over `nn.Sequential` pairs); the notes under the table give each
module's first error. `torch.jit.trace` works where the table says so: a trace records one input size's
Python control flow, so check it at the sizes you deploy.

Regenerate after changing a module: `OMP_NUM_THREADS=1 python scripts/gen_export_table.py` (several
minutes; needs `pip install visattn[export]`). `tests/test_export_table.py` checks that the table lists
exactly the registry's keys, and (marked slow) that a regeneration gives the same table.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / EXPORT_DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file would change (write nothing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    import onnxruntime

    keys = visattn.list_modules()
    results = {}
    for key in keys:
        t0 = time.perf_counter()
        results[key] = check_key(key, backend=args.backend)
        cells = ", ".join(f"{c} {'ok' if results[key][c].ok else 'FAIL'}" for c in CHECKS)
        print(f"{key}: {cells} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    versions = f"torch {torch.__version__.split('+')[0]}, onnxruntime {onnxruntime.__version__}"
    table = render_table(results, backend=args.backend, versions=versions)
    new = INTRO + table + "\n"
    old = args.out.read_text() if args.out.exists() else ""
    if args.check:
        return 0 if new == old else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(new)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
