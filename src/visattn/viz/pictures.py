"""What ``visattn show`` draws of each visattn module in a model, read from a :class:`Recorder`'s records.

Shared by the classification page (:mod:`visattn.viz.show`) and the segmentation page
(:mod:`visattn.viz.show_seg`): the error type and result of a page, the query pixel, and
:func:`module_pictures`, which turns a module's ``attention_map`` and recorded ``gate`` / ``attend``
steps into :class:`ModulePicture` records. Whether a square matrix is over channels or over positions is
what the module declares (its ``attention_map_axes``), never guessed from sizes that can coincide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..registry import info
from .maps import Picture, interpret
from .recorder import Recorder, declared_axes, inside

__all__ = ["ShowError", "ShowResult", "ModulePicture", "module_pictures", "query_pixel"]


class ShowError(ValueError):
    """A user error: a folder that is not a run, an unknown class, a query outside the image..."""


@dataclass
class ShowResult:
    """What a show page wrote: the page, every PNG, and notes on what could not be drawn."""

    page: Path
    pictures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ModulePicture:
    """A picture of the weights of the visattn module at ``owner`` (registry ``key``), from ``source``.

    For a ``"transform"`` picture, ``module_input`` and ``module_output`` hold the module's recorded input and
    its forward output on it (batch-first, on the CPU), so the transformed output can be drawn as it was
    produced; None otherwise.
    """

    owner: str  # path of the visattn module in the model
    key: str  # its registry key
    source: str  # "attention_map()", "attention_map()[1]", "gate (call 2)"
    picture: Picture
    module: nn.Module
    module_input: torch.Tensor | None = None
    module_output: torch.Tensor | None = None

    @property
    def label(self) -> str:
        return f"{self.source}" + (f", {self.picture.note}" if self.picture.note else "")


def query_pixel(query: tuple[int, int] | None, h: int, w: int) -> tuple[int, int]:
    """The query pixel ``(y, x)`` of an ``h x w`` image: ``query``, or the centre when it is None.

    Raises:
        ShowError: ``query`` outside the image.
    """
    if query is None:
        return h // 2, w // 2
    y, x = query
    if not (0 <= y < h and 0 <= x < w):
        raise ShowError(f"--query {y},{x} is outside the {h}x{w} input image (0 <= y < {h}, 0 <= x < {w})")
    return y, x


def module_pictures(model: nn.Module, owner: str, rec: Recorder, query: tuple[float, float]
                    ) -> tuple[list[ModulePicture], list[str]]:
    """Pictures of the visattn module at ``owner`` from what ``rec`` recorded in the last forward pass.

    ``attention_map`` on the module's recorded input first (the complete weights, documented shape); then
    the recorded ``gate`` / ``attend`` outputs of a kind ``attention_map`` did not give. ``query`` is the
    fractional query position (see :func:`visattn.viz.maps.query_cell`). Each tensor is read with the axes its
    module declares (:func:`visattn.viz.recorder.declared_axes`): a channel-by-channel matrix is drawn as a
    matrix even when the channel count equals the number of positions. Returns the pictures and notes.
    """
    key = rec.modules[owner]
    role = info(key).role
    module = model.get_submodule(owner)
    name = f"{key} at {owner or '(model)'}"
    calls = rec.inputs.get(owner) or []
    first = calls[0] if calls else ()
    x = next((a for a in first if isinstance(a, torch.Tensor)), None)
    in_hw = tuple(x.shape[-2:]) if x is not None and x.dim() == 4 else (1, 1)
    channels = x.shape[1] if x is not None and x.dim() == 4 else None
    items: list[ModulePicture] = []
    notes: list[str] = []
    if not calls:
        notes.append(f"{name}: not called in the forward pass")
    elif callable(getattr(module, "attention_map", None)):
        try:
            with torch.no_grad(), rec.paused():  # its gate / attend steps must not add records of this call
                weights = module.attention_map(*first)
                # a transform's picture is also its output: its own forward on the input it received
                output = module(*first) if role == "transform" else None
        except Exception as err:  # a module's own error: report it, draw the rest
            notes.append(f"{name}: attention_map failed ({type(err).__name__}: {err})")
        else:
            parts = weights if isinstance(weights, (tuple, list)) else (weights,)
            axes = declared_axes(module)
            if axes is not None and len(axes) != len(parts):
                notes.append(f"{name}: attention_map gave {len(parts)} maps but the module declares axes for "
                             f"{len(axes)} ({axes}); read by their shapes")
                axes = None
            for i, t in enumerate(parts):
                if t is None:
                    continue
                source = "attention_map()" + (f"[{i}]" if len(parts) > 1 else "")
                pictures, reason = interpret(t, in_hw=in_hw, channels=channels, role=role, query=query,
                                             axes=axes[i] if axes else None)
                if not pictures:
                    notes.append(f"{name}: {source}: {reason}")
                items += [ModulePicture(owner, key, source, p, module, *_transform_io(p, x, output))
                          for p in pictures]
    # The recorded steps: everything when there is no attention_map; otherwise only channel weights that it does
    # not return (e.g. GC's fusion gate). A step's raw layout (a rotated triplet branch, criss-cross weights
    # channels-last, one of coord's two strips) is a worse picture than the module's own attention_map.
    from_map = bool(items)
    has_channel = any(item.picture.kind == "channel" for item in items)
    for site in rec.sites.values():
        if not inside(site.path, owner):
            continue
        recorded = rec.records[site.path]
        for call, t in enumerate(recorded):
            pictures, reason = interpret(t, in_hw=in_hw, channels=channels, role=role, query=query, axes=site.axes)
            step = site.path[len(owner) + 1:] if owner else site.path
            source = step + (f" (call {call + 1})" if len(recorded) > 1 else "")
            if not pictures and not from_map:
                notes.append(f"{name}: {source}: {reason}")
            items += [ModulePicture(owner, key, source, p, module) for p in pictures
                      if not from_map or (p.kind == "channel" and not has_channel)]
    if calls and not items and not notes:
        notes.append(f"{name}: no attention_map and no gate/attend step to record")
    return items, notes


def _transform_io(picture: Picture, x: torch.Tensor | None, output) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The module's input and output kept with a transform picture (on the CPU); ``(None, None)`` otherwise."""
    if picture.kind != "transform" or not isinstance(output, torch.Tensor) or x is None:
        return None, None
    return x.detach().cpu(), output.detach().cpu()
