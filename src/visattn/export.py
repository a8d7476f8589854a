"""Export a finished run's model (ONNX, ``torch.export`` or TorchScript) with its preprocessing stated, checked.

The written file carries what a user needs to feed it: input size, channels, mean, std and class names.
ONNX keeps them in the model's ``metadata_props`` (key ``visattn``, a JSON object); every format also gets
them in ``FILE.json`` beside it. After writing, the exported model is run on real images of the run's own
validation data and compared with the eager model: onnxruntime for ONNX, the loaded ``ExportedProgram``
for ``export``, the loaded TorchScript module for ``torchscript``. A difference beyond the tolerance raises
:class:`ExportMismatchError` naming the largest difference: never a silently wrong file.

Example:
    >>> sorted(FORMATS)
    ['export', 'onnx', 'torchscript']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["export_run", "export_model", "ExportMismatchError", "FORMATS", "read_metadata", "check_inputs"]

FORMATS = ("onnx", "export", "torchscript")


class ExportMismatchError(ValueError):
    """The exported model's outputs differ from the eager model's on the same inputs."""


class _Logits(nn.Module):
    """A segmentation model's ``out`` map (its dict output has auxiliary maps only training needs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, Mapping) else out


def _metadata(run) -> dict[str, Any]:
    from .predict import class_names, preprocess_settings

    settings = preprocess_settings(run)
    return {"format": "visattn", "task": settings["task"], "input": "float32 (N, C, H, W), RGB or grey in [0, 1], "
            "then (x - mean) / std", "size": settings["size"], "channels": settings["channels"],
            "mean": list(settings["mean"]), "std": list(settings["std"]), "crop_pct": settings["crop_pct"],
            "class_names": class_names(run), "spec": _plain(getattr(run, "spec", None))}


def _plain(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def check_inputs(run, count: int = 4) -> torch.Tensor:
    """Up to ``count`` normalised validation images of the run's own data set, ``(N, C, H, W)``.

    Raises:
        ValueError: the run's data cannot be read (one line saying where it was looked for).
    """
    from dataclasses import replace

    config = replace(run.config, val_limit=count, train_limit=min(count * 10, run.config.train_limit or count * 10))
    try:
        _, val = run.task.load_data(config)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the run's validation data to check the export ({err})") from None
    loader = _first_batch(val, config, count)
    return loader[:count]


def _first_batch(val, config, count: int) -> torch.Tensor:
    from .data.loader import make_loader

    if hasattr(val, "loader"):  # image files decoded by workers
        batches = val.loader(count, workers=0)  # the evaluation transform, decoded here
    elif config.task == "segmentation":
        from .data.segmentation import SegBatchLoader

        batches = SegBatchLoader(val, count)
    else:
        batches = make_loader(val, count)
    x, _ = next(iter(batches))
    return x.float()


def export_model(model: nn.Module, example: torch.Tensor, fmt: str, out: str | Path,
                 metadata: Mapping[str, Any]) -> Path:
    """Write ``model`` (eval mode, CPU) in format ``fmt`` to ``out`` with ``metadata``; return the path.

    Raises:
        ValueError: an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(metadata))
    example = (example[:2] if len(example) >= 2 else example[:1].repeat(2, 1, 1, 1)).contiguous()
    # any batch size (an example of 2, so that the batch is not specialised to 1)
    batch = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    if fmt == "onnx":
        import onnx

        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                                    dynamic_shapes=batch, verbose=False)
        program.save(str(out))
        proto = onnx.load(str(out))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "visattn", text
        onnx.save(proto, str(out))
    elif fmt == "export":
        program = torch.export.export(model, (example,), dynamic_shapes=batch)
        with open(out, "wb") as f:  # a file object: any suffix (torch.export wants .pt2 for a path)
            torch.export.save(program, f, extra_files={"visattn.json": text})
    else:
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"visattn.json": text})
    Path(f"{out}.json").write_text(json.dumps(dict(metadata), indent=2) + "\n")
    return out


def _run_exported(fmt: str, path: Path, x: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    if fmt == "export":
        with open(path, "rb") as f:
            program = torch.export.load(f)
        return program.module()(x)
    return torch.jit.load(str(path))(x)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The preprocessing and class names stored with an export (``FILE.json``, or inside an ONNX file)."""
    path = Path(path)
    side = Path(f"{path}.json")
    if side.is_file():
        return json.loads(side.read_text())
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props["visattn"])


@torch.no_grad()
def export_run(run, fmt: str, out: str | Path, *, inputs: torch.Tensor | None = None, atol: float = 1e-4,
               rtol: float = 1e-3) -> dict[str, Any]:
    """Export the model of ``run`` and check it against eager on real images of the run's data.

    Args:
        run: an opened run (:func:`visattn.load_run`).
        fmt: ``"onnx"``, ``"export"`` (``torch.export``'s ``.pt2``) or ``"torchscript"``.
        out: the file to write (``out.json`` is written beside it).
        inputs: the images to compare on (default: :func:`check_inputs`, the run's validation images).
        atol: absolute tolerance of the comparison.
        rtol: relative tolerance of the comparison.

    Returns:
        ``{"path", "format", "images", "max_abs_diff", "metadata"}``.

    Raises:
        ExportMismatchError: the exported model's outputs differ from eager beyond the tolerance.
        ValueError: an unknown format, or the run's data cannot be read.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    model = _Logits(run.model).cpu().eval()
    x = check_inputs(run) if inputs is None else inputs
    x = x.float().cpu()
    metadata = _metadata(run)
    path = export_model(model, x, fmt, out, metadata)
    eager = model(x).float()
    exported = _run_exported(fmt, path, x).float()
    if exported.shape != eager.shape:
        raise ExportMismatchError(f"{path}: the exported model gives shape {tuple(exported.shape)}, eager "
                                  f"{tuple(eager.shape)}")
    diff = (exported - eager).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    if not torch.allclose(exported, eager, atol=atol, rtol=rtol):
        raise ExportMismatchError(f"{path}: the {fmt} model differs from eager on the run's images by up to "
                                  f"{worst:.3g} (tolerance {atol:g} + {rtol:g} x |eager|); do not use it")
    return {"path": str(path), "format": fmt, "images": len(x), "max_abs_diff": worst, "metadata": metadata}
