"""Where attention modules go in a ResNet: its residual blocks, their stages, and the slots inside a block.

:func:`find_stages` finds the residual blocks of torchvision's, timm's and visattn's ResNets (``BasicBlock`` /
``Bottleneck`` recognised by class name, defining module and structure, without importing torchvision or timm;
ResNeXt, Wide ResNet, ResNet-D and detection backbones holding one, FrozenBatchNorm2d included) and groups
them into stages (stage k is ``layer{k}``). :func:`plan` turns the module's ``ModuleInfo.placement`` into blocks:

=========================  ================================================================================
placement                  blocks (1-based stages)
=========================  ================================================================================
every_block                every block of ``stages`` (default: all), at ``position``: ``"standard"``
                           (residual branch, after the last BN, before the sum), ``"pre"`` (on the block
                           input), ``"post"`` (after the sum and the final ReLU) or ``"identity"`` (on the
                           shortcut). SE paper, Fig. 5.
stage_end                  after the last block of every stage but the last (BAM: after layer1..3).
every_stage_end            after the last block of every stage (RGA).
after_last_stage           after the last block of the last stage, before global pooling.
every_other_block          blocks 1, 3 of stage 2 and 1, 3, 5 of stage 3 (at most 2 and 3), after the block:
                           the non-local paper's 5-block ResNet-50 (Wang et al., Table 2c).
replaces_conv3x3[_norm]    the 3x3 conv carrying the stride (``conv2`` of a Bottleneck, ``conv1`` of a
                           BasicBlock), built with its ``out_channels`` and ``stride``; ``_norm``: the BN after
                           it becomes ``nn.Identity`` (the module normalises its own output, as SKNet).
input                      the network input, before the stem (:func:`~visattn.backbones.places.put_transform`).
decoder_skip               refused: no gating signal in a classification ResNet.
=========================  ================================================================================

Placements other than every_block use the ``"post"`` position of the block they follow. ``stages`` chooses
stages for any placement (their last block for the whole-block ones); ``blocks`` (``{stage: [indices]}``)
chooses single blocks.

How the module is stored:

- visattn blocks: in the block's ``attn`` slot (``layer1.0.attn.*`` state_dict keys).
- torchvision blocks: the block is rebuilt as visattn's block of the same layout from its *own* submodules
  (:func:`~visattn.backbones.blocks.adopt_block`: same conv / BN objects and keys) and the module goes into its
  ``attn`` slot, so an attached torchvision ResNet has the very state_dict keys of visattn's own model.
- timm blocks: ``"standard"`` uses timm's own ``se`` slot (``layer1.0.se.*``); ``"pre"`` and ``"post"`` store the
  module as ``attn``, applied by a forward pre-hook / hook on the block (so a timm SE-ResNet's own SE stays and
  a post module still goes in); ``"identity"`` appends it to the block's ``downsample``.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..registry import info
from ._edit import ATTACHED, Journal, all_or_nothing, put_after, put_before
from .blocks import POSITIONS, BasicBlock, Bottleneck, adopt_block
from .build import build_module
from .dry_run import trace
from .places import put_transform

__all__ = ["ResNetBlockSite", "default_nonlocal_blocks", "find_stages", "insert", "plan", "resnet_stages",
           "trace_sizes"]

Size = tuple[int, int]

#: placements whose module goes into every block (at ``position``) or replaces a conv of every block.
PER_BLOCK = frozenset({"every_block", "replaces_conv3x3", "replaces_conv3x3_norm"})


@dataclass
class ResNetBlockSite:
    """One residual block found in a ResNet."""

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
        """Attribute name of the norm after that conv."""
        return "bn2" if self.kind == "bottleneck" else "bn1"

    @property
    def in_channels(self) -> int:
        conv1 = self.block.conv1
        return int(conv1.in_channels if hasattr(conv1, "in_channels") else conv1.channels)

    @property
    def out_channels(self) -> int:
        # read from the last conv, not its norm: FrozenBatchNorm2d (detection backbones) has no num_features
        return int((self.block.conv3 if self.kind == "bottleneck" else self.block.conv2).out_channels)


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


def resnet_stages(model: nn.Module) -> tuple[list[list[ResNetBlockSite]], set[str]]:
    """ResNet blocks grouped by stage, and the look-alike block classes found that are not supported."""
    stages: list[list[ResNetBlockSite]] = []
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
        stages[-1].append(ResNetBlockSite(name, len(stages), len(stages[-1]), module, *found))
    return stages, odd


def find_stages(model: nn.Module) -> list[list[ResNetBlockSite]]:
    """The residual blocks of ``model`` grouped by the container holding them (``layer1``, ``layer2``, ...).

    Raises:
        ValueError: if ``model`` has no supported residual block.
    """
    stages, odd = resnet_stages(model)
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


def _check_blocks(blocks: Mapping[int, Iterable[int]], sites: list[list[ResNetBlockSite]]) -> list[tuple[int, int]]:
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


def _default_targets(placement: str, sites: list[list[ResNetBlockSite]]) -> list[tuple[int, int]]:
    """``(stage, index)`` of the blocks a whole-block placement follows."""
    n = len(sites)

    def last(s: int) -> tuple[int, int]:
        return s, len(sites[s - 1]) - 1

    if placement == "stage_end":
        return [last(s) for s in range(1, n)]
    if placement == "every_stage_end":
        return [last(s) for s in range(1, n + 1)]
    if placement == "every_other_block":
        return [(s, i) for s, idx in default_nonlocal_blocks([len(st) for st in sites]).items() for i in idx]
    return [last(n)]  # after_last_stage


def plan(key: str, sites: list[list[ResNetBlockSite]], position: str = "standard", stages: Iterable[int] | None = None,
         blocks: Mapping[int, Iterable[int]] | None = None) -> tuple[str, list[tuple[ResNetBlockSite, str]]]:
    """Where ``key`` goes: ``(kind, [(site, position), ...])`` with kind ``"slot"``, ``"conv"`` or ``"input"``."""
    meta = info(key)
    placement = meta.placement
    if position not in POSITIONS:
        close = difflib.get_close_matches(str(position), POSITIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"attach: position must be one of {POSITIONS}, got {position!r}{hint}")
    if stages is not None and blocks is not None:
        raise ValueError("attach: give stages or blocks, not both")
    chosen_stages = _check_stages(stages, len(sites))
    chosen_blocks = _check_blocks(blocks, sites) if blocks is not None else None

    if placement == "decoder_skip":
        raise ValueError(
            f"attach: {key!r} is a gate (forward(x, g) with a coarser gating signal g); a classification ResNet "
            "has no gating signal to give it. Use it in an encoder-decoder (e.g. U-Net skip connections)."
        )
    if placement == "input":
        if chosen_stages is not None or chosen_blocks is not None or position != "standard":
            raise ValueError(f"attach: {key!r} is a transform applied to the network input; "
                             "stages, blocks and position do not apply")
        return "input", []
    per_block = placement in PER_BLOCK
    if not per_block and position not in ("standard", "post"):
        raise ValueError(
            f"attach: position={position!r} applies to modules placed in every residual block; {key!r} "
            f"({placement}) is placed after whole blocks (the 'post' position)"
        )
    if placement.startswith("replaces_") and position != "standard":
        raise ValueError(f"attach: {key!r} replaces the 3x3 conv of each block; position does not apply")

    if chosen_blocks is not None:
        targets = chosen_blocks
    elif per_block:
        targets = [(s.stage, s.index) for st in sites for s in st if chosen_stages is None or s.stage in chosen_stages]
    elif chosen_stages is not None:
        targets = [(s, len(sites[s - 1]) - 1) for s in chosen_stages]
    else:
        targets = _default_targets(placement, sites)
    if not targets:
        raise ValueError(f"attach: no block selected for {key!r} ({placement})")
    where = position if per_block else "post"
    kind = "conv" if placement.startswith("replaces_") else "slot"
    return kind, [(sites[s - 1][i], where) for s, i in targets]


# --------------------------------------------------------------------------------------------- putting in place


def _replace(journal: Journal, model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    journal.set(model.get_submodule(parent_name) if parent_name else model, child, new)


def _is_visattn(module: nn.Module | None) -> bool:
    return module is not None and type(module).__module__.startswith("visattn.modules")


def _replaced(site: ResNetBlockSite, position: str, replace: bool) -> nn.Module | None:
    """The module already at ``position`` of a timm block that ``replace=True`` swaps (its widths pass on)."""
    block = site.block
    if site.family != "timm" or not replace:
        return None
    if position == "standard":
        return getattr(block, "se", None)
    if position in ("pre", "post"):
        return getattr(block, "attn", None)
    down = block.downsample
    return down[-1] if isinstance(down, nn.Sequential) and len(down) and _is_visattn(down[-1]) else None


def _put_timm(journal: Journal, site: ResNetBlockSite, module: nn.Module, position: str, replace: bool) -> None:
    """A timm block: its ``se`` slot, a hook for pre / post, its shortcut for identity; only a full place clashes."""
    block = site.block
    if position == "standard":
        if block.se is not None and not replace:
            raise ValueError(f"attach: timm block {site.name} already has an attention module; pass replace=True "
                             "to swap its SE")
        journal.set(block, "se", module)
    elif position in ("pre", "post"):
        kind = "before" if position == "pre" else "after"
        mark = getattr(block, ATTACHED, None)
        if getattr(block, "attn", None) is not None and (mark != kind or not replace):
            raise ValueError(f"attach: timm block {site.name} already has an attention module at `attn`"
                             + ("; pass replace=True to swap it" if mark == kind else ""))
        (put_before if position == "pre" else put_after)(journal, block, module)
    else:
        down = block.downsample
        if _is_visattn(down[-1] if isinstance(down, nn.Sequential) and len(down) else None):
            if not replace:
                raise ValueError(f"attach: timm block {site.name} already has an attention module on its identity "
                                 "branch; pass replace=True to swap it")
            journal.set(down, str(len(down) - 1), module)
        elif down is None:
            journal.set(block, "downsample", nn.Sequential(module))
        elif type(down) is nn.Sequential:  # keep its keys (downsample.0, .1, ...) and append
            journal.set(block, "downsample", nn.Sequential(OrderedDict([*down._modules.items(),
                                                                        (str(len(down)), module)])))
        else:
            journal.set(block, "downsample", nn.Sequential(down, module))


def _put_slot(journal: Journal, model: nn.Module, site: ResNetBlockSite, module: nn.Module, position: str,
              replace: bool) -> None:
    block = site.block
    if site.family == "visattn":
        if block.attn is not None and not replace:
            raise ValueError(f"attach: block {site.name} already holds {type(block.attn).__name__}; pass "
                             "replace=True to swap it")
        journal.set(block, "attn", module)
        journal.set(block, "position", position)
    elif site.family == "torchvision":
        new = adopt_block(Bottleneck if site.kind == "bottleneck" else BasicBlock, block)
        new.set_attention(module, position)
        _replace(journal, model, site.name, new)
    else:
        _put_timm(journal, site, module, position, replace)


def _build_conv(site: ResNetBlockSite, key: str, size: Size | None, kwargs: Mapping[str, Any]) -> nn.Module:
    conv = getattr(site.block, site.conv_name)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is already replaced ({type(conv).__name__})")
    if conv.dilation != (1, 1):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is dilated {conv.dilation}; conv-role modules "
                         "replace plain 3x3 convs only")
    return build_module(key, conv.in_channels, size, kwargs, f"{site.name}.{site.conv_name}",
                        out_channels=conv.out_channels, stride=int(conv.stride[0]))


def _put_conv(journal: Journal, site: ResNetBlockSite, module: nn.Module, with_norm: bool) -> None:
    block = site.block
    journal.set(block, site.conv_name, module)
    if with_norm:
        journal.set(block, site.norm_name, nn.Identity())
    # the ReLU after the replaced conv must not overwrite the module's output in place (it may be saved for
    # its backward, e.g. when the module ends in a ReLU)
    for act in ("relu", "act1" if site.kind == "basic" else "act2"):
        if isinstance(getattr(block, act, None), nn.Module) and getattr(getattr(block, act), "inplace", False):
            journal.set(getattr(block, act), "inplace", False)


def insert(model: nn.Module, sites: list[list[ResNetBlockSite]], key: str, *, position: str = "standard",
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
        return put_transform(model, key, input_size, in_chans, kwargs)
    built = []
    for site, where in targets:
        in_size, out_size = sizes.get(site.name, (None, None))
        if kind == "conv":
            built.append(_build_conv(site, key, in_size, kwargs))
        else:
            channels, size = (site.in_channels, in_size) if where == "pre" else (site.out_channels, out_size)
            built.append(build_module(key, channels, size, kwargs, f"block {site.name}",
                                      replacing=_replaced(site, where, replace)))
    with_norm = info(key).placement == "replaces_conv3x3_norm"
    with all_or_nothing() as journal:
        for (site, where), module in zip(targets, built, strict=True):
            if kind == "conv":
                _put_conv(journal, site, module, with_norm)
            else:
                _put_slot(journal, model, site, module, where, replace)
    return model


def trace_sizes(model: nn.Module, sites: list[list[ResNetBlockSite]], input_size: Size) -> dict[str, tuple[Size, Size]]:
    """Input / output feature sizes of every block, recorded by running ``model`` once on zeros."""
    blocks = [s for st in sites for s in st]
    shapes = trace(model, [(f"{s.name}<", s.block, "input") for s in blocks]
                   + [(f"{s.name}>", s.block, "output") for s in blocks], input_size)
    return {s.name: (tuple(shapes[f"{s.name}<"][-2:]), tuple(shapes[f"{s.name}>"][-2:]))
            for s in blocks if f"{s.name}<" in shapes}
