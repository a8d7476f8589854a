"""``visattn export RUN``: a run's model as ONNX, a torch.export program or TorchScript, checked against eager."""

from __future__ import annotations

import argparse

from .common import CLIError, run_library

__all__ = ["add_parser"]

_RUNTIME = {"onnx": "onnxruntime", "export": "the loaded torch.export program", "torchscript": "the loaded TorchScript"}


def run(args: argparse.Namespace) -> int:
    from ..export import export_run
    from ..train.run import load_run

    opened = run_library(lambda: load_run(args.run))
    try:
        result = export_run(opened, args.format, args.out)
    except ImportError as err:
        raise CLIError(f"--format {args.format} needs {err.name or 'a package'}: pip install 'visattn[export]'") \
            from None
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        raise CLIError(err.args[0] if err.args else repr(err)) from None
    print(f"wrote {result['path']} ({args.format}) and {result['path']}.json (preprocessing, class names)")
    print(f"{_RUNTIME[args.format]} matches eager on {result['images']} images of the run's validation data "
          f"(max |difference| {result['max_abs_diff']:.2g})")
    return 0


def add_parser(sub) -> None:
    """Add ``export`` to the ``visattn`` sub-parsers."""
    p = sub.add_parser("export", help="write a run's model (onnx, torch.export, torchscript), checked against eager")
    p.add_argument("run", metavar="RUN", help="a run folder written by `visattn train`")
    p.add_argument("--format", choices=("onnx", "export", "torchscript"), default="onnx", help="onnx (preprocessing "
                   "in metadata_props), export (a torch.export program) or torchscript (traced) (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (FILE.json is written beside it)")
    p.set_defaults(func=run)
