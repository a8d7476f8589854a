"""Pretrained weights, offline and safely: a state_dict file or an earlier visattn run, loaded into any classifier.

:func:`load_pretrained` reads a ``.pt`` / ``.pth`` file with ``torch.load(weights_only=True)`` (a file that
would run code when unpickled is refused before anything in it runs), a ``.safetensors`` file with
safetensors, or a run folder (its newest checkpoint). Then, for the model it loads into:

- attention modules (any registered visattn module, and an input transform such as an STN) start fresh,
  even where the file has weights for them: they are what fine-tuning adds;
- the classifier starts fresh when its shape differs (another number of classes); with the same shape it
  loads;
- the first conv is adapted when only its input channels differ (summed from RGB to grey, repeated and
  scaled from grey to RGB, as timm's ``adapt_input_conv`` does);
- every other weight must load: a key the file lacks or a shape that does not fit is a ``ValueError``
  naming the first such key.

It returns a :class:`LoadReport` that says what was loaded, what started fresh and why.

Example:
    >>> import torch, tempfile, os
    >>> from visattn.backbones.external import create_classifier
    >>> source, _ = create_classifier("resnet20", num_classes=10)
    >>> path = os.path.join(tempfile.mkdtemp(), "r20.pt"); torch.save(source.state_dict(), path)
    >>> model, spec = create_classifier("resnet20", num_classes=3, attention="se")
    >>> report = load_pretrained(model, path, spec=spec)
    >>> report.fresh["fc"], report.fresh["layer1.0.attn"]
    ('classifier: 10 outputs in the file, 3 in this model', 'attention module (SqueezeExcite)')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_pretrained", "read_state_dict", "LoadReport", "WeightsError", "classifier_name"]

#: containers that checkpoints of common trainers keep the weights under (visattn, timm, Lightning, ...).
STATE_KEYS = ("model", "state_dict", "model_state_dict", "state_dict_ema", "model_ema")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_CHECKPOINT = re.compile(r"epoch-(\d+)\.pt$")


class WeightsError(ValueError):
    """Weights that cannot be used: unreadable, refused as code, or not fitting the model (one line)."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        source: the file or run folder the weights came from.
        loaded: number of state_dict entries loaded from it.
        fresh: ``{module name: why it starts fresh}`` (attention modules, a changed classifier).
        adapted: ``{key: how it was adapted}`` (the first conv's input channels).
        unused: keys of the file that this model has no place for (e.g. the source's own attention).
        preprocessing: input size, mean and std the weights were trained with, where known (the run's own,
            or timm's ``pretrained_cfg`` / torchvision's weights meta for their networks), else ``None``.
    """

    source: str
    loaded: int = 0
    fresh: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None

    def lines(self) -> list[str]:
        """The report as lines for a log: loaded count, then each fresh module and adaptation with its reason."""
        out = [f"pretrained {self.source}: {self.loaded} tensors loaded"
               + (f", {len(self.unused)} in the file unused ({', '.join(self.unused[:3])}"
                  + (", ..." if len(self.unused) > 3 else "") + ")" if self.unused else "")]
        by_reason: dict[str, list[str]] = {}
        for name, why in self.fresh.items():
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():  # eight CBAMs are one line, not eight
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} modules)" if len(names) > 3 else "")
            out.append(f"  starts fresh: {shown} ({why})")
        out += [f"  adapted: {name} ({how})" for name, how in self.adapted.items()]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _first_line(err: BaseException) -> str:
    # torch's weights_only text around the reason (advice to turn the check off) is left out
    lines = [ln.strip() for ln in str(err).splitlines()
             if ln.strip() and "weights only" not in ln.lower() and "weights_only" not in ln] or \
        [ln.strip() for ln in str(err).splitlines() if ln.strip()][:1]
    blocked = next((ln for ln in lines if "global" in ln.lower()), None)
    return (blocked or (lines[0] if lines else type(err).__name__))[:200]


def _unwrap(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((k for k in STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise WeightsError(f"{where}: no state_dict in it (a dict of tensors, or one under "
                               f"{', '.join(repr(k) for k in STATE_KEYS)})")
        obj = obj[inner]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{where}: holds a {type(obj).__name__}, not a state_dict of tensors")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise WeightsError(f"{where}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor")
    state = {}
    for key, value in obj.items():
        key = str(key)
        for prefix in _WRAPPER_PREFIXES:  # DistributedDataParallel / torch.compile wrappers
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def _run_checkpoint(folder: Path) -> Path:
    found = sorted(((int(m.group(1)), p) for p in (folder / "checkpoints").glob("epoch-*.pt")
                    if (m := _CHECKPOINT.search(p.name))), reverse=True)
    if not found:
        raise WeightsError(f"{folder}: not a visattn run (no checkpoints/epoch-NNN.pt) and not a weights file")
    return found[0][1]


def read_state_dict(source: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state_dict in ``source`` (a file, or a run folder's newest checkpoint) and the file it came from.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``,
    which refuses a pickle that holds code (a class whose unpickling would call a function) without running it.

    Raises:
        WeightsError: a missing or unreadable file, a pickle holding code or objects, no state_dict inside.
        ImportError: a ``.safetensors`` file without safetensors installed.
    """
    path = Path(source)
    if path.is_dir():
        path = _run_checkpoint(path)
    if not path.is_file():
        raise WeightsError(f"{source}: no such weights file or run folder")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{path}: reading .safetensors needs safetensors: pip install 'visattn[train]'") from None
        try:
            return _unwrap(load_file(str(path), device="cpu"), str(path)), path
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for code, RuntimeError / EOFError for damaged files
        if "global" in str(err).lower():  # weights_only's unpickler met a class or function: code, not data
            raise WeightsError(f"{path}: refused: it holds pickled code or objects, not only tensors "
                               f"({_first_line(err)}); a weights file must be data") from None
        raise WeightsError(f"{path}: not a readable weights file ({type(err).__name__}: {_first_line(err)})") from None
    return _unwrap(obj, str(path)), path


def _attention_modules(model: nn.Module) -> dict[str, str]:
    """``{name: class name}`` of the outermost registered visattn modules in ``model``."""
    from .registry import info, list_modules

    classes = tuple({info(k).cls for k in list_modules()})
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if name and isinstance(module, classes) and not any(name.startswith(f"{p}.") for p in found):
            found[name] = type(module).__name__
    return found


def classifier_name(model: nn.Module) -> str | None:
    """Qualified name of the model's classifier: timm's ``get_classifier()``, else its last ``nn.Linear``.

    A network without a Linear layer (SqueezeNet) has its last conv as classifier.

    Example:
        >>> from visattn.backbones import create
        >>> classifier_name(create("resnet20"))
        'fc'
    """
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        name = next((n for n, m in model.named_modules() if m is head and n), None)
        if name is not None and any(True for _ in head.parameters()):
            return name
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def _under(key: str, prefixes: Mapping[str, Any] | list[str]) -> str | None:
    return next((p for p in prefixes if key == p or key.startswith(f"{p}.")), None)


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt the first conv as timm does: sum RGB kernels to grey, else repeat them scaled by old / new channels."""
    old = weight.shape[1]
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    repeat = -(-in_chans // old)
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (old / in_chans)


def _run_preprocessing(folder: Path) -> dict[str, Any] | None:
    for name in ("preprocessing.json", "run.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return data.get("preprocessing", data) if isinstance(data, dict) else None
    return None


def load_pretrained(model: nn.Module, source: str | Path, *, spec: Mapping[str, Any] | None = None) -> LoadReport:
    """Load the weights of ``source`` into ``model``: all but attention and a changed classifier must fit.

    Args:
        model: the network to fill (e.g. from :func:`visattn.backbones.external.create_classifier`); modified
            in place.
        source: a state_dict file (``.pt`` / ``.pth`` / ``.safetensors``; a checkpoint dict holding it under
            ``model`` / ``state_dict`` also works) or a visattn run folder.
        spec: the model spec of ``model``; for a ``timm:`` / ``tv:`` backbone, the report carries the input
            size, mean and std of that network's published weights.

    Returns:
        The :class:`LoadReport`.

    Raises:
        WeightsError: (a ``ValueError``) in one line: the file is unreadable or holds code, a weight the model
            needs is missing from it, or a shape does not fit (the first such key named).
    """
    state, path = read_state_dict(source)
    report = LoadReport(str(source))
    target = model.state_dict()
    attention = _attention_modules(model)
    head = classifier_name(model)
    for name, cls in attention.items():
        report.fresh[name] = f"attention module ({cls})"
    if head is not None:
        head_keys = [k for k in target if _under(k, [head])]
        mismatch = next((k for k in head_keys if k not in state or state[k].shape != target[k].shape), None)
        if mismatch is not None:
            if mismatch in state and state[mismatch].ndim >= 1 and target[mismatch].ndim >= 1:
                why = f"{state[mismatch].shape[0]} outputs in the file, {target[mismatch].shape[0]} in this model"
            else:
                why = "not in the file"
            report.fresh[head] = f"classifier: {why}"
    first_conv = next((f"{n}.weight" for n, m in model.named_modules()
                       if isinstance(m, nn.Conv2d) and not _under(n, attention)), None)
    new_state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key, value in target.items():
        if _under(key, report.fresh):  # attention modules, a changed classifier
            continue
        if key not in state:
            missing.append(key)
            continue
        loaded = state[key]
        if loaded.shape != value.shape:
            if (key == first_conv and loaded.ndim == 4 and loaded.shape[0] == value.shape[0]
                    and loaded.shape[2:] == value.shape[2:]):
                loaded = _adapt_input_conv(loaded, value.shape[1])
                report.adapted[key] = f"input channels {state[key].shape[1]} -> {value.shape[1]}"
            else:
                raise WeightsError(f"{path}: {key} does not fit: {tuple(loaded.shape)} in the file, "
                                   f"{tuple(value.shape)} in the model ({type(model).__name__})")
        new_state[key] = loaded.to(dtype=value.dtype)
    if missing:
        raise WeightsError(f"{path}: {missing[0]} is not in the file ({len(missing)} weight(s) of "
                           f"{type(model).__name__} missing; only attention and a changed classifier may start fresh)")
    model.load_state_dict(new_state, strict=False)
    report.loaded = len(new_state)
    report.unused = [k for k in state if k not in new_state and not _under(k, report.fresh)]
    report.preprocessing = _run_preprocessing(Path(source)) if Path(source).is_dir() else None
    if report.preprocessing is None and spec is not None and ":" in str(spec.get("backbone", "")):
        from .backbones.external import preprocessing_for

        report.preprocessing = preprocessing_for(str(spec["backbone"]))
    return report
