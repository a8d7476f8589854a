"""Record the attention weights of every visattn module inside a model, with forward hooks.

In the spirit of lucidrains' ``vit_pytorch.recorder.Recorder``: wrap a model, run it, read the
weights, ``eject()`` the hooks. Every visattn module (an instance of a registered class) computes its
weights as a named step, a submodule called ``gate`` (the applied weights) or ``attend`` (an attention
matrix / softmax); the recorder hooks those steps and keeps their outputs, detached and on the CPU, one
tensor per call (Coordinate attention calls its ``gate`` twice per forward, so it records two).

Example:
    >>> import torch, visattn
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), visattn.create("se", 16))
    >>> with Recorder(model) as rec:
    ...     _ = model(torch.randn(2, 3, 8, 8))
    >>> {path: [tuple(t.shape) for t in ts] for path, ts in rec.records.items()}
    {'1.gate': [(2, 16, 1, 1)]}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import info, list_modules

__all__ = ["Recorder", "Site", "STEP_NAMES", "AXES", "attention_modules", "declared_axes", "inside", "outermost"]

#: Names of the submodules whose outputs are a module's weights (see docs/contributing.md).
STEP_NAMES = ("gate", "attend")

#: What a module may declare its weights to be over, one entry per tensor its ``attention_map`` returns, in its
#: ``attention_map_axes`` class attribute: ``"positions"`` (a map over the grid, or attention between positions)
#: or ``"channels"`` (channel weights, or a channel-by-channel matrix such as DANet's CAM).
AXES = ("positions", "channels")


def declared_axes(module: nn.Module) -> tuple[str, ...] | None:
    """The module's ``attention_map_axes`` (one of :data:`AXES` per map of its ``attention_map``), or None.

    Raises:
        ValueError: a declaration that is not a tuple of :data:`AXES`.
    """
    axes = getattr(module, "attention_map_axes", None)
    if axes is None:
        return None
    if isinstance(axes, str) or not all(a in AXES for a in axes):
        raise ValueError(f"{type(module).__name__}.attention_map_axes must be a tuple of {AXES}, got {axes!r}")
    return tuple(axes)


@dataclass(frozen=True)
class Site:
    """One hooked step: the ``gate`` / ``attend`` submodule at ``path`` of the visattn module at ``owner``.

    Attributes:
        path: the step's path in the model, e.g. ``"layer1.0.attn.spatial_gate.gate"``.
        name: ``"gate"`` or ``"attend"``.
        owner: path of the innermost visattn module holding the step, e.g. ``"layer1.0.attn.spatial_gate"``
            (``""`` when the model itself is that module).
        key: the owner's registry key, e.g. ``"cbam"``.
        axes: what the step's weights are over, ``"positions"`` or ``"channels"``, when the owner declares
            one map (:func:`declared_axes`); None when it declares none or several.
    """

    path: str
    name: str
    owner: str
    key: str
    axes: str | None = None


def _registered_classes() -> dict[type, str]:
    return {info(k).cls: k for k in list_modules()}


def attention_modules(model: nn.Module) -> dict[str, str]:
    """Path -> registry key of every visattn module in ``model`` (nested ones included), in module order."""
    classes = _registered_classes()
    return {path: classes[type(m)] for path, m in model.named_modules() if type(m) in classes}


def outermost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another of ``paths`` (``"a.b"`` is inside ``"a"``; ``""`` contains everything)."""
    paths = list(paths)
    return [p for p in paths if not any(inside(p, q) for q in paths if q != p)]


def inside(path: str, parent: str) -> bool:
    """Whether module path ``path`` is inside ``parent`` (``""``, the model itself, contains everything)."""
    return parent == "" or path.startswith(parent + ".")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _find_sites(model: nn.Module, modules: dict[str, str]) -> dict[str, Site]:
    sites: dict[str, Site] = {}
    for owner, key in modules.items():  # module order: a nested visattn module comes after its parent
        axes = declared_axes(model.get_submodule(owner))
        for sub_path, _ in model.get_submodule(owner).named_modules():
            name = sub_path.rsplit(".", 1)[-1]
            if name in STEP_NAMES:
                path = _join(owner, sub_path)
                one = axes[0] if axes is not None and len(axes) == 1 else None
                sites[path] = Site(path, name, owner, key, one)  # a nested owner overwrites: innermost wins
    order = {p: i for i, (p, _) in enumerate(model.named_modules())}
    return dict(sorted(sites.items(), key=lambda kv: order.get(kv[0], -1)))


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                return v
    return None


class Recorder:
    """Context manager recording the ``gate`` / ``attend`` outputs of the visattn modules in ``model``.

    Args:
        model: any ``nn.Module`` holding visattn modules (or one itself).
        sites: record only these step paths (default: every ``gate`` / ``attend`` step found).
        inputs: also keep the positional inputs of visattn modules, to call their ``attention_map`` later:
            ``True`` for every visattn module, or an iterable of module paths.

    Attributes:
        sites: step path -> :class:`Site`.
        modules: path -> registry key of every visattn module in the model.
        records: step path -> list of the step's outputs, one per call since the last :meth:`clear`,
            detached and copied to the CPU (a step returning a tuple contributes its first tensor).
        inputs: module path -> list of the positional arguments of each call (tensors detached and
            cloned, on the model's device); empty unless ``inputs`` was given.

    The hooks are added on ``__enter__`` (or :meth:`attach`, or the first call) and removed on
    ``__exit__`` / :meth:`eject`; they never change the model's outputs. Calling the recorder runs the
    model and returns ``(output, records)``.

    Context modules with a memory-efficient forward (``scaled_dot_product_attention``, blocked kernels) never
    materialise their attention, so their ``attend`` step records nothing in a forward pass; calling their
    ``attention_map`` on the recorded input (``inputs=True``) while the recorder is attached records it.

    Raises:
        ValueError: a path in ``sites`` or ``inputs`` that is not a step / visattn module of the model.
    """

    def __init__(self, model: nn.Module, *, sites: Iterable[str] | None = None,
                 inputs: bool | Iterable[str] = False):
        self.model = model
        self.modules = attention_modules(model)
        found = _find_sites(model, self.modules)
        if sites is not None:
            sites = list(sites)
            unknown = [p for p in sites if p not in found]
            if unknown:
                raise ValueError(f"Recorder: {unknown} are not gate/attend steps of visattn modules; the model "
                                 f"has {list(found)}")
            found = {p: found[p] for p in sites}
        self.sites: dict[str, Site] = found
        if inputs is True:
            input_paths = list(self.modules)
        elif inputs is False:
            input_paths = []
        else:
            input_paths = list(inputs)
            unknown = [p for p in input_paths if p not in self.modules]
            if unknown:
                raise ValueError(f"Recorder: {unknown} are not visattn modules of the model; it has "
                                 f"{list(self.modules)}")
        self._input_paths = input_paths
        self.records: dict[str, list[torch.Tensor]] = {p: [] for p in self.sites}
        self.inputs: dict[str, list[tuple[Any, ...]]] = {p: [] for p in input_paths}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._paused = False

    # -- hooks ------------------------------------------------------------------------------------------
    def _record_output(self, path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            t = None if self._paused else _first_tensor(output)
            if t is not None:
                self.records[path].append(t.detach().to("cpu", copy=True))

        return hook

    def _record_input(self, path: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if not self._paused:
                self.inputs[path].append(tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a
                                               for a in args))

        return hook

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> Recorder:
        """Add the hooks (no-op when attached)."""
        if not self._handles:
            for path in self.sites:
                self._handles.append(self.model.get_submodule(path).register_forward_hook(self._record_output(path)))
            for path in self._input_paths:
                self._handles.append(self.model.get_submodule(path).register_forward_pre_hook(self._record_input(path)))
        return self

    def eject(self) -> nn.Module:
        """Remove every hook; returns the model, as it was before the recorder touched it."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self.model

    @contextmanager
    def paused(self) -> Iterator[Recorder]:
        """Record nothing inside the block (the hooks stay), e.g. while calling a module's ``attention_map``."""
        was, self._paused = self._paused, True
        try:
            yield self
        finally:
            self._paused = was

    def clear(self) -> None:
        """Forget what was recorded (the hooks stay)."""
        for v in self.records.values():
            v.clear()
        for v in self.inputs.values():
            v.clear()

    def __enter__(self) -> Recorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.eject()

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, list[torch.Tensor]]]:
        """Run the model (attaching the hooks if needed); returns ``(output, records)``."""
        self.attach()
        return self.model(*args, **kwargs), self.records

    def __repr__(self) -> str:
        return f"Recorder({len(self.sites)} steps in {len(self.modules)} visattn modules, attached={self.attached})"
