"""Generic places: the families of :mod:`visattn.backbones.families`, ``where=`` globs, and the network input.

:func:`find_blocks` finds the blocks of a known family and the attention place of each; :func:`family_places`
turns a module's ``ModuleInfo.placement`` into places:

==========================================  ============================================================
placement                                   places
==========================================  ============================================================
every_block                                 the place of every block (where the family's SE sits)
stage_end                                   after the block ending each stage but the last
every_stage_end                             after the block ending every stage
after_last_stage, every_other_block         after the last block
replaces_conv3x3[_norm], decoder_skip       refused (no such conv slot / no gating signal)
==========================================  ============================================================

"After a block" is on its output: when the block is the last child of a plain ``nn.Sequential`` (a stage) the
module is appended to that Sequential (``stages.1.attn.*``), elsewhere it is stored as the block's ``attn`` and
applied by a forward hook. Only a place that already holds attention conflicts: a network with its own SE in
every block still takes a module after its stages.

Example:
    >>> from torch import nn
    >>> vgg_like = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
    ...                          nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2))
    >>> [(p.name, p.kind, p.channels, p.family) for p in find_places(vgg_like)]
    [('1', 'after', 8, 'VGG-style plain stack'), ('4', 'after', 16, 'VGG-style plain stack')]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..registry import info
from ._edit import ATTACHED, all_or_nothing, put_after, put_before, runs_children_in_order
from .build import build_module
from .dry_run import TRACE_SIZE, first_conv, last_axis_width, trace
from .families import FAMILIES, Family

__all__ = ["FamilyBlock", "Place", "attach_places", "family_places", "find_blocks", "find_places", "input_hook",
           "put_transform", "trace_places", "where_places"]

Size = tuple[int, int]
Where = str | Sequence[str] | Callable[[str, nn.Module], bool]


@dataclass
class Place:
    """One place in a model where :func:`~visattn.backbones.attach.attach` puts a module."""

    name: str  # qualified name of the target submodule, e.g. "blocks.1.0.se"
    parent: nn.Module  # module holding the target
    attr: str  # the target's attribute name in ``parent``
    kind: str  # "slot" | "after" | "before"
    channels: int | None  # channels of the feature map at the place (None: read them by a trace)
    family: str

    @property
    def target(self) -> nn.Module:
        return getattr(self.parent, self.attr)

    @property
    def taken(self) -> nn.Module | None:
        """The attention module already at this place, if any."""
        if self.kind == "slot":
            return None if isinstance(self.target, nn.Identity) else self.target
        return self.target.attn if getattr(self.target, ATTACHED, None) == self.kind else None

    @property
    def clash(self) -> str | None:
        """Why nothing can go here: the target has an ``attn`` of its own, or one put on its other side."""
        if self.kind == "slot" or not hasattr(self.target, "attn"):
            return None
        mark = getattr(self.target, ATTACHED, None)
        if mark is None:
            return f"{self.name} has an attribute `attn` of its own"
        return None if mark == self.kind else f"{self.name} already runs a module {mark} it"


@dataclass
class FamilyBlock:
    """One block of a known family: its name, the module, its family and the places inside it."""

    name: str
    module: nn.Module
    family: Family
    places: list[Place] = field(default_factory=list)


def _parent(model: nn.Module, name: str) -> tuple[str, nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return parent_name, model.get_submodule(parent_name) if parent_name else model, attr


def find_blocks(model: nn.Module) -> list[FamilyBlock]:
    """The blocks of a known family in ``model`` with their places, in module order (ResNets excluded).

    A block nested in a matched block is not searched. The VGG-style rule is tried only when no other family
    matches, so a stem's conv + max-pool inside another network does not count.
    """
    for families in (FAMILIES[:-1], FAMILIES[-1:]):
        blocks: list[FamilyBlock] = []
        for name, module in model.named_modules():
            if any(name.startswith(b.name + ".") for b in blocks):
                continue
            family = next((f for f in families if f.match(module)), None)
            if family is None:
                continue
            block = FamilyBlock(name, module, family)
            for path, kind, channels in family.locate(module):
                if path:
                    parent_path, _, attr = path.rpartition(".")
                    qual, parent = (f"{name}.{path}" if name else path,
                                    module.get_submodule(parent_path) if parent_path else module)
                else:  # the block itself: its parent holds it
                    qual, (_, parent, attr) = name, _parent(model, name)
                block.places.append(Place(qual, parent, attr, kind, channels, family.name))
            blocks.append(block)
        if any(b.places for b in blocks):
            return [b for b in blocks if b.places]
    return []


def find_places(model: nn.Module) -> list[Place]:
    """The place of every block of a known family in ``model``, in module order (ResNets excluded)."""
    return [p for b in find_blocks(model) for p in b.places]


def _after_block(model: nn.Module, block: FamilyBlock, channels: int | None) -> Place:
    """The place on ``block``'s output: appended to its stage when it ends a plain Sequential, else a hook."""
    parent_name, parent, attr = _parent(model, block.name)
    own = [k for k in parent._modules if not (k == "attn" and getattr(parent, ATTACHED, None) == "after")]
    if parent_name and runs_children_in_order(parent) and own and own[-1] == attr:
        _, grand, parent_attr = _parent(model, parent_name)
        return Place(parent_name, grand, parent_attr, "after", channels, block.family.name)
    return Place(block.name, parent, attr, "after", channels, block.family.name)


def _stage_ends(model: nn.Module, blocks: list[FamilyBlock], input_size: Size) -> tuple[list[int], dict[str, Any]]:
    """Indices of the blocks whose successor shrinks the feature map, and the shapes of every block's output."""
    shapes = trace(model, [(b.name, b.module, "output") for b in blocks], input_size)
    sizes = [shapes.get(b.name) for b in blocks]
    ends = []
    for i in range(len(blocks) - 1):
        here, there = sizes[i], sizes[i + 1]
        if isinstance(here, tuple) and isinstance(there, tuple) and len(here) == len(there) == 4 and (
                there[2] < here[2] or there[3] < here[3]):
            ends.append(i)
    return ends, shapes


def family_places(model: nn.Module, key: str, blocks: list[FamilyBlock], input_size: Size | None) -> list[Place]:
    """The places of ``key`` in a network of known family blocks, by the module's placement.

    Raises:
        ValueError: the placement has no place in this family (a conv replacement, a gate), or the network
            has a single stage where the module goes between stages.
    """
    meta = info(key)
    placement, family = meta.placement, blocks[0].family
    if placement == "decoder_skip":
        raise ValueError(f"attach: {key!r} is a gate (forward(x, g) with a coarser gating signal g); a "
                         "classification network has no gating signal to give it")
    if placement.startswith("replaces_"):
        raise ValueError(f"attach: {key!r} replaces a 3x3 conv of a ResNet block; {family.name} has no such conv "
                         "slot (use a ResNet, or a plug-in module here)")
    places = [p for b in blocks for p in b.places]
    if placement == "every_block":
        return places
    once = placement in ("after_last_stage", "every_other_block")
    if family.stage_ends == "places":
        return places[-1:] if once else places
    if once:
        return [_after_block(model, blocks[-1], None)]
    ends, shapes = _stage_ends(model, blocks, input_size or TRACE_SIZE)
    if placement == "every_stage_end":
        ends.append(len(blocks) - 1)
    if not ends:
        raise ValueError(f"attach: {key!r} goes at the ends of stages ({placement}), but the {family.name} blocks "
                         f"of {type(model).__name__} never shrink the feature map on a {input_size or TRACE_SIZE} "
                         "input; pass a larger input_size or say where with where=")
    return [_after_block(model, blocks[i], shapes[blocks[i].name][1]) for i in ends]


def trace_places(model: nn.Module, places: list[Place], input_size: Size) -> dict[str, tuple[int, ...]]:
    """The shape of the feature map at each place, recorded by running ``model`` once on zeros.

    Raises:
        ValueError: the model does not run on such an input, a place is not reached by its forward, or the
            tensor there is not a ``(B, C, H, W)`` feature map (a channels-last ``(N, H, W, C)`` tensor, as Swin's
            blocks pass around, included: its H would be read as channels and scaled).
    """
    shapes = trace(model, [(p.name, p.target, "output" if p.kind == "after" else "input") for p in places],
                   input_size)
    for place in places:
        shape = shapes.get(place.name)
        if shape is None:
            raise ValueError(f"attach: {place.name} is not run by {type(model).__name__}'s forward")
        if not isinstance(shape, tuple) or len(shape) != 4:
            raise ValueError(f"attach: the output of {place.name} is {shape}, not a (B, C, H, W) feature map, so an "
                             "attention module does not fit there")
        width = last_axis_width(place.target) if place.kind == "after" else None
        if width is not None and shape[-1] == width != shape[1]:
            raise ValueError(f"attach: the output of {place.name} is {shape}, channels last (N, H, W, C): its last "
                             f"linear / layer norm has width {width}; attention modules take (N, C, H, W), so "
                             "choose a place whose output is channels first")
    return shapes


def where_places(model: nn.Module, where: Where) -> list[Place]:
    """Places after every module whose name matches the glob(s) ``where``, or for which ``where(name, m)``."""
    if callable(where):
        chosen = where
    else:
        globs = [where] if isinstance(where, str) else list(where)
        if not globs or not all(isinstance(g, str) for g in globs):
            raise ValueError(f"attach: where= must be a glob, a list of globs or a callable (name, module) -> bool, "
                             f"got {where!r}")
        chosen = lambda name, module: any(fnmatch.fnmatchcase(name, g) for g in globs)  # noqa: E731
    places = []
    inserted: list[str] = []  # attention modules put there before: neither matched nor searched
    for name, module in model.named_modules():
        if not name or any(name.startswith(i + ".") for i in inserted):
            continue
        if type(module).__module__.startswith("visattn.modules."):
            inserted.append(name)
            continue
        if chosen(name, module):
            _, parent, attr = _parent(model, name)
            places.append(Place(name, parent, attr, "after", None, "where="))
    if not places:
        names = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Conv2d, nn.BatchNorm2d))][:6]
        raise ValueError(f"attach: where={where!r} matches no module of {type(model).__name__}; its module "
                         f"names look like {names} (fnmatch globs: 'features.*.conv2', 'layer?.*')")
    return places


def attach_places(model: nn.Module, key: str, places: list[Place], *, replace: bool,
                  input_size: Size | None, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build one module per place, then put them all in place (or none, if any step fails)."""
    meta = info(key)
    if meta.placement == "decoder_skip":
        raise ValueError(f"attach: {key!r} is a gate (forward(x, g) with a coarser gating signal g); a "
                         "classification network has no gating signal to give it")
    if meta.placement.startswith("replaces_"):
        raise ValueError(f"attach: {key!r} replaces a 3x3 conv of a ResNet block; {places[0].family} has no such "
                         "conv slot (use a ResNet, or a plug-in module here)")
    clashes = [p.clash for p in places if p.clash is not None]
    if clashes:
        raise ValueError(f"attach: {clashes[0]}; choose a submodule next to it (where=)")
    taken = [p for p in places if p.taken is not None]
    if taken and not replace:
        listed = ", ".join(f"{p.name} ({type(p.taken).__name__})" for p in taken[:3])
        raise ValueError(f"attach: {len(taken)} place(s) already hold an attention module: {listed}"
                         f"{', ...' if len(taken) > 3 else ''}; pass replace=True to swap them for {key!r}")
    if taken:
        places = taken  # replace=True: where the network has attention, and only there
    if meta.size_bound and input_size is None:
        raise ValueError(f"attach: {key!r} is bound to one feature size; pass input_size=(H, W) so that the size "
                         f"at {places[0].name} can be computed")
    needs_trace = meta.size_bound or any(p.channels is None for p in places)
    shapes = trace_places(model, places, input_size or TRACE_SIZE) if needs_trace else {}
    built = []
    for place in places:
        channels = place.channels
        if channels is None:
            channels = shapes[place.name][1]
        elif place.name in shapes and shapes[place.name][1] != channels:
            raise ValueError(f"attach: {place.name} has {shapes[place.name][1]} channels, not {channels}")
        size = shapes[place.name][2:] if input_size is not None and place.name in shapes else None
        built.append(build_module(key, int(channels), size, kwargs, place.name,
                                  replacing=place.taken if place.kind == "slot" else None))
    with all_or_nothing() as journal:
        for place, module in zip(places, built, strict=True):
            if place.kind == "slot":
                journal.set(place.parent, place.attr, module)
            elif place.kind == "after":
                put_after(journal, place.target, module)
            else:
                put_before(journal, place.target, module)
    return model


# --------------------------------------------------------------------------------------------- the input


def input_hook(model: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook applying ``model.transform`` to the network input."""
    return (model.transform(args[0]), *args[1:])


def put_transform(model: nn.Module, key: str, input_size: Size | None, in_chans: int | None,
                  kwargs: Mapping[str, Any]) -> nn.Module:
    """Put transform ``key`` (placement ``"input"``) on the network input as ``model.transform``."""
    if getattr(model, "transform", None) is not None:
        raise ValueError(f"attach: {type(model).__name__} already has a `transform`")
    if in_chans is None:
        first = first_conv(model)
        if first is None:
            raise ValueError(f"attach: the input channels of {type(model).__name__} cannot be read (no Conv2d)")
        in_chans = first.in_channels
    module = build_module(key, int(in_chans), input_size, kwargs, "the input")
    with all_or_nothing() as journal:
        journal.set(model, "transform", module)
        if not getattr(model, "_visattn_transform_slot", False):
            journal.hook(model.register_forward_pre_hook(input_hook))
    return model
