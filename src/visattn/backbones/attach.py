"""Put a registered attention module into a CNN: the ResNet rules here, other families in ``families.py``.

This module holds :func:`attach` and the ResNet rules. Other families (RegNet, EfficientNet / MobileNet,
ConvNeXt, ByobNet, DenseNet, VGG-style stacks) are described in :mod:`visattn.backbones.families`, and
``where=`` puts a module after any modules named by a glob or chosen by a callable.

:func:`attach` walks a model, finds its residual blocks (torchvision's and timm's ``BasicBlock`` /
``Bottleneck``, recognised by class name, defining module and structure, without importing torchvision or
timm), groups them into stages, and inserts the module where its paper puts it:

========================  =====================================================================================
role / key                where
========================  =====================================================================================
plugin (se, cbam, eca,    in every residual block of ``stages`` (default: all), at ``position``:
gc, coord, ...)           ``"standard"`` (residual branch, after the last BN, before the sum), ``"pre"`` (on the
                          block input, before the split), ``"post"`` (after the sum and the final ReLU) or
                          ``"identity"`` (on the shortcut). SE paper, Fig. 5.
bam, residual_attention   at the stage boundaries: after the last block of every stage but the last (BAM
                          paper: "at every bottleneck of the network"; after layer1..3 of an ImageNet ResNet).
conv (sk, scconv, ...)    replaces each block's 3x3 conv that carries the stride: ``conv2`` of a Bottleneck,
                          ``conv1`` of a BasicBlock (as timm's SK blocks); built with ``out_channels`` and
                          ``stride`` of that conv. When the module normalises its own output (SK's branches
                          end in BN + ReLU) the BN after it becomes ``nn.Identity`` as in SKNet.
context: nonlocal         after every other block of stages 2 and 3 (torchvision's layer2 / layer3, the paper's
                          res3 / res4): blocks 1, 3 of layer2 and 1, 3, 5 of layer3 in a ResNet-50, the
                          non-local paper's 5-block model (Wang et al., Table 2c: "3 to res4 and 2 to res3, to
                          every other residual block"); at most 2 and 3 blocks per stage.
context: rga_s, rga_c     after the last block of every stage (RGA paper: after each of the four stages).
context: others (danet,   after the last block of the last stage, before global pooling.
cc, psa, ema, oc, ...)
transform (stn)           on the network input, before the stem.
gate (attention_gate)     refused: a gate needs a second, coarser gating signal that a classification ResNet
                          does not have (use it in an encoder-decoder).
========================  =====================================================================================

``stages`` (1-based: stage k is ``layer{k}``) chooses the stages for any key; ``blocks`` (``{stage: [block
indices]}``) chooses single blocks. Size-bound modules (PSA, RGA) are built for the feature size at their
place, computed from ``input_size``.

How the module is stored:

- visattn blocks: in the block's ``attn`` slot (``layer1.0.attn.*`` state_dict keys).
- torchvision blocks: the block is rebuilt as visattn's block of the same layout from its *own* submodules
  (same conv / BN objects and keys) and the module goes into its ``attn`` slot, so an attached torchvision
  ResNet has the very state_dict keys of visattn's own model.
- timm blocks: ``"standard"`` uses timm's own ``se`` slot (``layer1.0.se.*``); ``"pre"`` and ``"post"`` store
  the module as ``attn`` and apply it with a forward pre-hook / hook on the block; ``"identity"`` appends it to
  the block's ``downsample`` (a new ``nn.Sequential`` when the block had none).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import create as _create_module
from ..registry import info as _module_info
from ._edit import Journal, all_or_nothing, post_hook, pre_hook, put_after, put_before
from .blocks import POSITIONS, BasicBlock, Bottleneck, _adopt
from .families import FAMILIES, Place, find_places

__all__ = ["attach", "find_stages"]

#: plug-in modules that go between stages rather than into every block.
STAGE_END_KEYS = frozenset({"bam", "residual_attention"})
#: context modules that go after every stage.
EVERY_STAGE_KEYS = frozenset({"rga_s", "rga_c"})
#: conv-role modules whose output is already normalised (SK's branches and SC-Conv's halves end in BN + ReLU,
#: SANet's main conv is conv + BN + ReLU): the BN that followed the replaced conv becomes ``nn.Identity``.
NORMALISED_CONV_KEYS = frozenset({"sk", "scconv", "sanet"})

Size = tuple[int, int]


@dataclass
class Site:
    """One residual block found in a model."""

    name: str  # qualified name in the model, e.g. "layer2.1"
    stage: int  # 1-based
    index: int  # 0-based within the stage
    block: nn.Module
    family: str  # "visattn" | "torchvision" | "timm"
    kind: str  # "basic" | "bottleneck"

    @property
    def conv_name(self) -> str:
        """Attribute name of the 3x3 conv carrying the stride."""
        return "conv2" if self.kind == "bottleneck" else "conv1"

    @property
    def norm_name(self) -> str:
        return "bn2" if self.kind == "bottleneck" else "bn1"

    @property
    def in_channels(self) -> int:
        return int(self.block.conv1.in_channels)

    @property
    def out_channels(self) -> int:
        return int((self.block.bn3 if self.kind == "bottleneck" else self.block.bn2).num_features)


_REQUIRED = {"basic": ("conv1", "bn1", "conv2", "bn2", "downsample"),
             "bottleneck": ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample")}


def _classify(module: nn.Module) -> tuple[str, str] | None:
    """``(family, kind)`` for a supported residual block, ``None`` for anything else."""
    if isinstance(module, (BasicBlock, Bottleneck)):
        return "visattn", "bottleneck" if isinstance(module, Bottleneck) else "basic"
    cls = type(module)
    if cls.__name__ not in ("BasicBlock", "Bottleneck"):
        return None
    origin = cls.__module__
    if origin.startswith("torchvision.models.resnet"):
        family = "torchvision"
    elif origin.startswith("timm.models.resnet"):
        family = "timm"
    else:
        return None
    kind = "bottleneck" if cls.__name__ == "Bottleneck" else "basic"
    missing = [a for a in _REQUIRED[kind] if not hasattr(module, a)]
    if missing or not isinstance(module.conv1, nn.Conv2d):
        return None
    return family, kind


def _resnet_stages(model: nn.Module) -> tuple[list[list[Site]], set[str]]:
    """ResNet blocks grouped by stage, and the look-alike block classes found that are not supported."""
    stages: list[list[Site]] = []
    parents: list[str] = []
    odd: set[str] = set()
    for name, module in model.named_modules():
        found = _classify(module)
        if found is None:
            if type(module).__name__ in ("BasicBlock", "Bottleneck"):
                odd.add(f"{type(module).__module__}.{type(module).__name__}")
            continue
        if any(name.startswith(s.name + ".") for st in stages for s in st):
            continue  # a block nested inside a block is not a stage member
        parent = name.rpartition(".")[0]
        if not parents or parents[-1] != parent:
            parents.append(parent)
            stages.append([])
        stages[-1].append(Site(name, len(stages), len(stages[-1]), module, *found))
    return stages, odd


def find_stages(model: nn.Module) -> list[list[Site]]:
    """The residual blocks of ``model`` grouped by the container holding them (``layer1``, ``layer2``, ...).

    Raises:
        ValueError: if ``model`` has no supported residual block.
    """
    stages, odd = _resnet_stages(model)
    if not stages:
        children = ", ".join(f"{n}: {type(m).__name__}" for n, m in list(model.named_children())[:6])
        hint = f"; found unsupported block classes {sorted(odd)}" if odd else ""
        raise ValueError(
            f"attach: {type(model).__name__} is not a supported ResNet: no torchvision, timm or visattn "
            f"BasicBlock / Bottleneck inside (children: {children or 'none'}){hint}"
        )
    return stages


# --------------------------------------------------------------------------------------------- placement


def _check_stages(stages: Iterable[int] | None, n: int) -> list[int] | None:
    if stages is None:
        return None
    if isinstance(stages, int):
        stages = [stages]
    out = sorted(set(int(s) for s in stages))
    bad = [s for s in out if not 1 <= s <= n]
    if bad or not out:
        raise ValueError(f"attach: stages must be a non-empty set of stage numbers in 1..{n}, got {list(stages)}")
    return out


def _check_blocks(blocks: Mapping[int, Iterable[int]], sites: list[list[Site]]) -> list[tuple[int, int]]:
    if not isinstance(blocks, Mapping):
        raise ValueError(f"attach: blocks must map a stage number to block indices, e.g. {{3: [1, 3, 5]}}, "
                         f"got {blocks!r}")
    out = []
    for stage, indices in blocks.items():
        if not 1 <= int(stage) <= len(sites):
            raise ValueError(f"attach: blocks has stage {stage}; stages are 1..{len(sites)}")
        n = len(sites[int(stage) - 1])
        for i in [indices] if isinstance(indices, int) else indices:
            if not 0 <= int(i) < n:
                raise ValueError(f"attach: blocks has block {i} in stage {stage}, which has blocks 0..{n - 1}")
            out.append((int(stage), int(i)))
    if not out:
        raise ValueError("attach: blocks selects no block")
    return sorted(set(out))


def default_nonlocal_blocks(blocks_per_stage: list[int]) -> dict[int, list[int]]:
    """Every other block (indices 1, 3, ...) of stages 2 and 3, at most 2 and 3 blocks: the paper's 5-block model.

    Example:
        >>> default_nonlocal_blocks([3, 4, 6, 3])
        {2: [1, 3], 3: [1, 3, 5]}
    """
    out = {}
    for stage, limit in ((2, 2), (3, 3)):
        if stage <= len(blocks_per_stage):
            picked = list(range(1, blocks_per_stage[stage - 1], 2))[:limit]
            if picked:
                out[stage] = picked
    return out


def plan(key: str, sites: list[list[Site]], position: str = "standard", stages: Iterable[int] | None = None,
         blocks: Mapping[int, Iterable[int]] | None = None) -> tuple[str, list[tuple[Site, str]]]:
    """Where ``key`` goes: ``(kind, [(site, position), ...])`` with kind ``"slot"``, ``"conv"`` or ``"input"``."""
    meta = _module_info(key)
    if position not in POSITIONS:
        close = difflib.get_close_matches(str(position), POSITIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"attach: position must be one of {POSITIONS}, got {position!r}{hint}")
    if stages is not None and blocks is not None:
        raise ValueError("attach: give stages or blocks, not both")
    n = len(sites)
    chosen_stages = _check_stages(stages, n)
    chosen_blocks = _check_blocks(blocks, sites) if blocks is not None else None
    role = meta.role

    if role == "gate":
        raise ValueError(
            f"attach: {key!r} is a gate (forward(x, g) with a coarser gating signal g); a classification ResNet "
            "has no gating signal to give it. Use it in an encoder-decoder (e.g. U-Net skip connections)."
        )
    if role == "transform":
        if chosen_stages is not None or chosen_blocks is not None or position != "standard":
            raise ValueError(f"attach: {key!r} is a transform applied to the network input; "
                             "stages, blocks and position do not apply")
        return "input", []

    per_block = role in ("plugin", "conv") and key not in STAGE_END_KEYS
    if not per_block and position not in ("standard", "post"):
        raise ValueError(
            f"attach: position={position!r} applies to modules placed in every residual block; {key!r} "
            f"({role}) is placed after whole blocks (the 'post' position)"
        )
    if role == "conv" and position != "standard":
        raise ValueError(f"attach: {key!r} replaces the 3x3 conv of each block; position does not apply")

    def last(s: int) -> tuple[int, int]:
        return s, len(sites[s - 1]) - 1

    if chosen_blocks is not None:
        targets = chosen_blocks
    elif per_block:
        targets = [(s.stage, s.index) for st in sites for s in st if chosen_stages is None or s.stage in chosen_stages]
    elif chosen_stages is not None:
        targets = [last(s) for s in chosen_stages]
    elif key in STAGE_END_KEYS:
        targets = [last(s) for s in range(1, n)]
    elif key == "nonlocal":
        targets = [(s, i) for s, idx in default_nonlocal_blocks([len(st) for st in sites]).items() for i in idx]
    elif key in EVERY_STAGE_KEYS:
        targets = [last(s) for s in range(1, n + 1)]
    else:
        targets = [last(n)]
    if not targets:
        raise ValueError(f"attach: no block selected for {key!r}")
    where = position if per_block else "post"
    kind = "conv" if role == "conv" else "slot"
    return kind, [(sites[s - 1][i], where) for s, i in targets]


# --------------------------------------------------------------------------------------------- building


def _build(key: str, channels: int, size: Size | None, kwargs: Mapping[str, Any], place: str, **fixed: Any):
    meta = _module_info(key)
    kw = dict(kwargs)
    clash = sorted(set(kw) & (set(fixed) | ({"feature_size"} if meta.size_bound else set())))
    if clash:
        raise ValueError(f"attach: {clash} of {key!r} are set by the backbone at each place; do not pass them")
    kw.update(fixed)
    if meta.size_bound:
        if size is None:
            raise ValueError(f"attach: {key!r} is bound to one feature size; pass input_size=(H, W) so that the size "
                             f"at {place} can be computed")
        kw["feature_size"] = tuple(int(v) for v in size)
    module = _create_module(key, channels, **kw)
    low = getattr(module, "min_size", 1)
    low = (low, low) if isinstance(low, int) else tuple(low)
    if size is not None and (size[0] < low[0] or size[1] < low[1]):
        raise ValueError(f"attach: {type(module).__name__} ({key!r}) needs H >= {low[0]} and W >= {low[1]}, but "
                         f"the feature map at {place} is {tuple(size)} for this input_size; use a larger input_size "
                         "or fewer stages")
    return module


# names kept so that models pickled by earlier versions (hooks refer to these) still load
_pre_hook = pre_hook
_post_hook = post_hook


def _input_hook(model: nn.Module, args: tuple) -> tuple:
    return (model.transform(args[0]), *args[1:])


def _replace(journal: Journal, model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    journal.set(model.get_submodule(parent_name) if parent_name else model, child, new)


def _put_slot(journal: Journal, model: nn.Module, site: Site, module: nn.Module, position: str,
              replace: bool) -> None:
    block = site.block
    if site.family == "visattn":
        if block.attn is not None and not replace:
            raise ValueError(f"attach: block {site.name} already holds {type(block.attn).__name__}; pass "
                             "replace=True to swap it")
        journal.set(block, "attn", module)
        journal.set(block, "position", position)
        return
    if site.family == "torchvision":
        new = _adopt(Bottleneck if site.kind == "bottleneck" else BasicBlock, block)
        new.set_attention(module, position)
        _replace(journal, model, site.name, new)
        return
    # timm
    se, attn = getattr(block, "se", None), getattr(block, "attn", None)
    if replace and position == "standard" and se is not None and attn is None:
        journal.set(block, "se", module)
        return
    if se is not None or attn is not None:
        hint = "; pass replace=True to swap its SE" if position == "standard" and se is not None else ""
        raise ValueError(f"attach: timm block {site.name} already has an attention module{hint}")
    if position == "standard":
        journal.set(block, "se", module)
    elif position == "identity":
        down = block.downsample
        if down is None:
            journal.set(block, "downsample", nn.Sequential(module))
        elif type(down) is nn.Sequential:  # keep its keys (downsample.0, .1, ...) and append
            journal.set(block, "downsample", nn.Sequential(OrderedDict([*down._modules.items(),
                                                                        (str(len(down)), module)])))
        else:
            journal.set(block, "downsample", nn.Sequential(down, module))
    else:
        journal.set(block, "attn", module)
        journal.hook(block.register_forward_pre_hook(pre_hook) if position == "pre"
                     else block.register_forward_hook(post_hook))


def _build_conv(site: Site, key: str, size: Size | None, kwargs: Mapping[str, Any]) -> nn.Module:
    conv = getattr(site.block, site.conv_name)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is already replaced ({type(conv).__name__})")
    if conv.dilation != (1, 1):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is dilated {conv.dilation}; conv-role modules "
                         "replace plain 3x3 convs only")
    return _build(key, conv.in_channels, size, kwargs, f"{site.name}.{site.conv_name}",
                  out_channels=conv.out_channels, stride=int(conv.stride[0]))


def _put_conv(journal: Journal, site: Site, key: str, module: nn.Module) -> None:
    block = site.block
    journal.set(block, site.conv_name, module)
    if key in NORMALISED_CONV_KEYS:
        journal.set(block, site.norm_name, nn.Identity())
    # the ReLU after the replaced conv must not overwrite the module's output in place (it may be saved for
    # its backward, e.g. when the module ends in a ReLU)
    for act in ("relu", "act1" if site.kind == "basic" else "act2"):
        if isinstance(getattr(block, act, None), nn.Module) and getattr(getattr(block, act), "inplace", False):
            journal.set(getattr(block, act), "inplace", False)


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _put_transform(model: nn.Module, key: str, input_size: Size | None, in_chans: int | None,
                   kwargs: Mapping[str, Any]) -> nn.Module:
    if getattr(model, "transform", None) is not None:
        raise ValueError(f"attach: {type(model).__name__} already has a `transform`")
    if in_chans is None:
        first = _first_conv(model)
        if first is None:
            raise ValueError(f"attach: the input channels of {type(model).__name__} cannot be read (no Conv2d)")
        in_chans = first.in_channels
    module = _build(key, int(in_chans), input_size, kwargs, "the input")
    with all_or_nothing() as journal:
        journal.set(model, "transform", module)
        if not getattr(model, "_visattn_transform_slot", False):
            journal.hook(model.register_forward_pre_hook(_input_hook))
    return model


def insert(model: nn.Module, sites: list[list[Site]], key: str, *, position: str = "standard",
           stages: Iterable[int] | None = None, blocks: Mapping[int, Iterable[int]] | None = None,
           sizes: Mapping[str, tuple[Size, Size]] | None = None, input_size: Size | None = None,
           in_chans: int | None = None, kwargs: Mapping[str, Any] | None = None, replace: bool = False) -> nn.Module:
    """Insert ``key`` into the blocks ``sites`` of ``model`` (used by :func:`attach` and visattn's ResNets).

    All modules are built first, then put in place; if any step fails the model is left as it was.
    ``sizes`` maps a block's name to its ``(input, output)`` feature sizes (needed by size-bound modules).
    """
    kwargs = dict(kwargs or {})
    kind, targets = plan(key, sites, position, stages, blocks)
    sizes = sizes or {}
    if kind == "input":
        return _put_transform(model, key, input_size, in_chans, kwargs)
    built = []
    for site, where in targets:
        in_size, out_size = sizes.get(site.name, (None, None))
        if kind == "conv":
            built.append(_build_conv(site, key, in_size, kwargs))
        else:
            channels, size = (site.in_channels, in_size) if where == "pre" else (site.out_channels, out_size)
            built.append(_build(key, channels, size, kwargs, f"block {site.name}"))
    with all_or_nothing() as journal:
        for (site, where), module in zip(targets, built, strict=True):
            if kind == "conv":
                _put_conv(journal, site, key, module)
            else:
                _put_slot(journal, model, site, module, where, replace)
    return model


def _run_once(model: nn.Module, input_size: Size) -> None:
    """Run ``model`` in eval mode without gradients on one zero image of ``input_size``."""
    first = _first_conv(model)
    if first is None:
        raise ValueError(f"attach: {type(model).__name__} has no Conv2d, so its input channels are unknown")
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, first.in_channels, *input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)


def trace_sizes(model: nn.Module, sites: list[list[Site]], input_size: Size) -> dict[str, tuple[Size, Size]]:
    """Input / output feature sizes of every block, recorded by running ``model`` once on zeros."""
    sizes: dict[str, tuple[Size, Size]] = {}
    handles = []
    for site in (s for st in sites for s in st):
        def hook(mod, args, out, name=site.name):
            sizes[name] = (tuple(args[0].shape[-2:]), tuple(out.shape[-2:]))
        handles.append(site.block.register_forward_hook(hook))
    try:
        _run_once(model, input_size)
    finally:
        for h in handles:
            h.remove()
    return sizes


# --------------------------------------------------------------------------------------------- other families

#: input size of the dry run that reads channels at ``where=`` places when no ``input_size`` is given.
TRACE_SIZE = (64, 64)


def trace_places(model: nn.Module, places: list[Place], input_size: Size) -> dict[str, tuple[int, ...]]:
    """The shape of the feature map at each place, recorded by running ``model`` once on zeros.

    Raises:
        ValueError: the model does not run on such an input, a place is not reached by its forward, or the
            tensor there is not a ``(B, C, H, W)`` feature map.
    """
    shapes: dict[str, Any] = {}
    handles = []
    for place in places:
        def record(name: str, value: Any) -> None:
            shapes[name] = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__

        if place.kind == "after":
            handles.append(place.target.register_forward_hook(
                lambda m, a, out, name=place.name: record(name, out)))
        else:  # a slot or "before": the input of the target
            handles.append(place.target.register_forward_pre_hook(
                lambda m, a, name=place.name: record(name, a[0] if a else None)))
    try:
        _run_once(model, input_size)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001  (any failure of a foreign model's forward is reported as one line)
        raise ValueError(f"attach: the feature maps cannot be read: running {type(model).__name__} on a "
                         f"{input_size} input failed ({type(err).__name__}: {err}); pass input_size=(H, W) that it "
                         "accepts") from None
    finally:
        for h in handles:
            h.remove()
    for place in places:
        shape = shapes.get(place.name)
        if shape is None:
            raise ValueError(f"attach: {place.name} is not run by {type(model).__name__}'s forward")
        if not isinstance(shape, tuple) or len(shape) != 4:
            raise ValueError(f"attach: the output of {place.name} is {shape}, not a (B, C, H, W) feature map, so an "
                             "attention module does not fit there")
    return shapes


def _where_places(model: nn.Module, where: str | Sequence[str] | Callable[[str, nn.Module], bool]) -> list[Place]:
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
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            places.append(Place(name, parent, attr, "after", None, "where="))
    if not places:
        names = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Conv2d, nn.BatchNorm2d))][:6]
        raise ValueError(f"attach: where={where!r} matches no module of {type(model).__name__}; its module "
                         f"names look like {names} (fnmatch globs: 'features.*.conv2', 'layer?.*')")
    return places


def _no_family_error(model: nn.Module, odd: set[str]) -> ValueError:
    known = ["ResNet / ResNeXt / Wide ResNet / ResNet-D", *dict.fromkeys(f.name.split(" (")[0] for f in FAMILIES)]
    children = ", ".join(f"{n}: {type(m).__name__}" for n, m in list(model.named_children())[:6]) or "none"
    blocks = sorted({type(m).__name__ for m in model.modules()
                     if m is not model and type(m).__module__.split(".")[0] != "torch" and any(m.children())})[:8]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][:3] or ["features.0"]
    hint = f"; unsupported look-alike blocks {sorted(odd)}" if odd else ""
    return ValueError(
        f"attach: {type(model).__name__} has no block of a family attach() knows ({'; '.join(known)}): children "
        f"{children}; block classes {blocks or 'none'}{hint}. Say where the module goes with where=: a glob over "
        f"module names (e.g. where={convs[0]!r}; names: {convs}) or a callable where=lambda name, module: ..."
    )


def _attach_places(model: nn.Module, key: str, places: list[Place], *, replace: bool,
                   input_size: Size | None, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build one module per place, then put them all in place (or none, if any step fails)."""
    meta = _module_info(key)
    family = places[0].family
    if meta.role == "gate":
        raise ValueError(f"attach: {key!r} is a gate (forward(x, g) with a coarser gating signal g); a "
                         "classification network has no gating signal to give it")
    if meta.role == "conv":
        raise ValueError(f"attach: {key!r} replaces a 3x3 conv of a ResNet block; {family} has no such conv slot "
                         "(use a ResNet, or a plug-in module here)")
    if meta.role == "context" and family != "where=":
        places = places[-1:]  # context modules go once, after the last block (as in the ResNet rule)
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
        built.append(_build(key, int(channels), size, kwargs, place.name))
    with all_or_nothing() as journal:
        for place, module in zip(places, built, strict=True):
            if place.kind == "slot":
                journal.set(place.parent, place.attr, module)
            elif place.kind == "after":
                put_after(journal, place.target, module)
            else:
                put_before(journal, place.target, module)
    return model


def _factory_kwargs(model: nn.Module) -> dict[str, Any]:
    """``device`` / ``dtype`` of the model's first floating-point parameter: new modules are built to match."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return {} if param is None else {"device": param.device, "dtype": param.dtype}


def attach(model: nn.Module, key: str, position: str = "standard", *,
           where: str | Sequence[str] | Callable[[str, nn.Module], bool] | None = None, replace: bool = False,
           stages: Iterable[int] | None = None, blocks: Mapping[int, Iterable[int]] | None = None,
           input_size: int | Size | None = None, **kwargs: Any) -> nn.Module:
    """Insert attention module ``key`` into a CNN, in place, where its paper (or the network's family) puts it.

    ResNets (torchvision's, timm's, visattn's; ResNeXt, Wide ResNet, ResNet-D and detection backbones holding
    one) follow the rules in this module's docstring. Other families (RegNet, EfficientNet / MobileNet,
    ConvNeXt, timm ByobNet, DenseNet, VGG-style stacks) follow their description in
    :mod:`visattn.backbones.families`: plug-in modules at every block's place, context modules once after
    the last block. Anything else: say where with ``where=``.

    attach is all-or-nothing: every module is built before any is inserted, and if any place fails the model
    is left exactly as it was.

    Args:
        model: the network; modified in place (torchvision ResNet blocks that receive a module are rebuilt as
            visattn blocks from their own submodules, so hooks set on those block objects are lost).
        key: registry key (``visattn.list_modules()``).
        position: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` for plug-in modules in ResNet blocks
            (SE paper, Fig. 5).
        where: put the module after every module whose qualified name matches this fnmatch glob (or list of
            globs; ``"features.*.conv2"``), or for which ``where(name, module)`` is true; its channels are read
            by one dry run of the model. Overrides the family rules.
        replace: swap attention modules the network already has (the SE of an EfficientNet, RegNetY, timm
            SE-ResNet, MobileNetV3 ...) for ``key``, where they are and only there.
        stages: ResNets: stage numbers (1 = ``layer1``) to put the module in; default: the paper's.
        blocks: ResNets: ``{stage: [block indices]}``, single blocks instead of whole stages.
        input_size: network input ``(H, W)`` (or an int), needed for size-bound modules such as ``psa``, and
            the dry-run size for ``where=`` (default 64 x 64).
        **kwargs: the module's own keyword arguments (``reduction=8``, ...). The modules are built on the
            device and in the dtype of the model's parameters unless ``device`` / ``dtype`` are given.

    Returns:
        ``model``.

    Raises:
        ValueError: one line naming the model, the place and the reason: no family matches (the message lists
            what was found and how to use ``where=``), ``where=`` matches nothing, channels cannot be read, the
            module does not fit, a place is already taken, a bad position / stage / block, a gate module.
        KeyError: unknown ``key``.
        TypeError: a keyword argument the module does not take.

    Example:
        >>> from torch import nn
        >>> from visattn.backbones import create
        >>> m = attach(create("resnet18"), "se")
        >>> m.layer1[0].attn.fc1.out_channels
        4
        >>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU())
        >>> attach(net, "cbam", where="2")[2].attn.channels
        32
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    meta = _module_info(key)
    kwargs = {**_factory_kwargs(model), **kwargs}
    try:
        if where is not None:
            if position != "standard" or stages is not None or blocks is not None:
                raise ValueError("attach: position, stages and blocks apply to the ResNet rules, not to where=")
            return _attach_places(model, key, _where_places(model, where), replace=replace, input_size=input_size,
                                  kwargs=kwargs)
        sites, odd = _resnet_stages(model)
        if sites:
            sizes = trace_sizes(model, sites, input_size) if meta.size_bound and input_size is not None else None
            return insert(model, sites, key, position=position, stages=stages, blocks=blocks, sizes=sizes,
                          input_size=input_size, kwargs=kwargs, replace=replace)
        if meta.role == "transform":
            return insert(model, [], key, position=position, stages=stages, blocks=blocks, input_size=input_size,
                          kwargs=kwargs)
        places = find_places(model)
        if not places:
            raise _no_family_error(model, odd)
        if position != "standard" or stages is not None or blocks is not None:
            raise ValueError(f"attach: position, stages and blocks apply to ResNet blocks; {places[0].family} "
                             "blocks have one place each (use where= to choose others)")
        return _attach_places(model, key, places, replace=replace, input_size=input_size, kwargs=kwargs)
    except ValueError as err:
        text = str(err).removeprefix("attach: ")
        raise ValueError(f"attach({type(model).__name__}, {key!r}): {text}") from None
