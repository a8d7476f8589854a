"""Put a registered attention module into the residual blocks of a ResNet: visattn's, torchvision's or timm's.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import create as _create_module
from ..registry import info as _module_info
from .blocks import POSITIONS, BasicBlock, Bottleneck, _adopt

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


def find_stages(model: nn.Module) -> list[list[Site]]:
    """The residual blocks of ``model`` grouped by the container holding them (``layer1``, ``layer2``, ...).

    Raises:
        TypeError: if ``model`` has no supported residual block.
    """
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
    if not stages:
        children = ", ".join(f"{n}: {type(m).__name__}" for n, m in list(model.named_children())[:6])
        hint = f"; found unsupported block classes {sorted(odd)}" if odd else ""
        raise TypeError(
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


def _pre_hook(block: nn.Module, args: tuple) -> tuple:
    return (block.attn(args[0]), *args[1:])


def _post_hook(block: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return block.attn(output)


def _input_hook(model: nn.Module, args: tuple) -> tuple:
    return (model.transform(args[0]), *args[1:])


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _put_slot(model: nn.Module, site: Site, module: nn.Module, position: str) -> None:
    block = site.block
    if site.family == "torchvision":
        block = _adopt(Bottleneck if site.kind == "bottleneck" else BasicBlock, block)
        _replace(model, site.name, block)
        site.block, site.family = block, "visattn"
    if site.family == "visattn":
        block.set_attention(module, position)
        return
    # timm
    taken = getattr(block, "se", None) is not None or getattr(block, "attn", None) is not None
    if taken:
        raise ValueError(f"attach: timm block {site.name} already has an attention module")
    if position == "standard":
        block.se = module
    elif position == "identity":
        if block.downsample is None:
            block.downsample = nn.Sequential(module)
        elif isinstance(block.downsample, nn.Sequential):
            block.downsample.append(module)
        else:
            block.downsample = nn.Sequential(block.downsample, module)
    else:
        block.attn = module
        if position == "pre":
            block.register_forward_pre_hook(_pre_hook)
        else:
            block.register_forward_hook(_post_hook)


def _put_conv(site: Site, key: str, size: Size | None, kwargs: Mapping[str, Any]) -> None:
    block = site.block
    conv = getattr(block, site.conv_name)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is already replaced ({type(conv).__name__})")
    if conv.dilation != (1, 1):
        raise ValueError(f"attach: {site.name}.{site.conv_name} is dilated {conv.dilation}; conv-role modules "
                         "replace plain 3x3 convs only")
    module = _build(key, conv.in_channels, size, kwargs, f"{site.name}.{site.conv_name}",
                    out_channels=conv.out_channels, stride=int(conv.stride[0]))
    setattr(block, site.conv_name, module)
    if key in NORMALISED_CONV_KEYS:
        setattr(block, site.norm_name, nn.Identity())
    # the ReLU after the replaced conv must not overwrite the module's output in place (it may be saved for
    # its backward, e.g. when the module ends in a ReLU)
    for act in ("relu", "act1" if site.kind == "basic" else "act2"):
        if isinstance(getattr(block, act, None), nn.Module) and getattr(getattr(block, act), "inplace", False):
            getattr(block, act).inplace = False


def insert(model: nn.Module, sites: list[list[Site]], key: str, *, position: str = "standard",
           stages: Iterable[int] | None = None, blocks: Mapping[int, Iterable[int]] | None = None,
           sizes: Mapping[str, tuple[Size, Size]] | None = None, input_size: Size | None = None,
           in_chans: int | None = None, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Insert ``key`` into the blocks ``sites`` of ``model`` (used by :func:`attach` and visattn's ResNets).

    ``sizes`` maps a block's name to its ``(input, output)`` feature sizes (needed by size-bound modules).
    """
    kwargs = dict(kwargs or {})
    kind, targets = plan(key, sites, position, stages, blocks)
    sizes = sizes or {}
    if kind == "input":
        if getattr(model, "transform", None) is not None:
            raise ValueError(f"attach: {type(model).__name__} already has a `transform`")
        if in_chans is None:
            first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
            in_chans = first.in_channels if first is not None else None
        module = _build(key, int(in_chans), input_size, kwargs, "the input")
        own_slot = getattr(model, "_visattn_transform_slot", False)
        model.transform = module
        if not own_slot:
            model.register_forward_pre_hook(_input_hook)
        return model
    for site, where in targets:
        in_size, out_size = sizes.get(site.name, (None, None))
        if kind == "conv":
            _put_conv(site, key, in_size, kwargs)
            continue
        channels, size = (site.in_channels, in_size) if where == "pre" else (site.out_channels, out_size)
        module = _build(key, channels, size, kwargs, f"block {site.name}")
        _put_slot(model, site, module, where)
    return model


def trace_sizes(model: nn.Module, sites: list[list[Site]], input_size: Size) -> dict[str, tuple[Size, Size]]:
    """Input / output feature sizes of every block, recorded by running ``model`` once on zeros."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"attach: {type(model).__name__} has no Conv2d")
    param = next(model.parameters())
    sizes: dict[str, tuple[Size, Size]] = {}
    handles = []
    for site in (s for st in sites for s in st):
        def hook(mod, args, out, name=site.name):
            sizes[name] = (tuple(args[0].shape[-2:]), tuple(out.shape[-2:]))
        handles.append(site.block.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, first.in_channels, *input_size, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sizes


def attach(model: nn.Module, key: str, position: str = "standard", *, stages: Iterable[int] | None = None,
           blocks: Mapping[int, Iterable[int]] | None = None, input_size: int | Size | None = None,
           **kwargs: Any) -> nn.Module:
    """Insert attention module ``key`` into every residual block of a ResNet, in place, and return the model.

    Works on torchvision's and timm's ResNets (and ResNeXts, wide ResNets, detection backbones holding one)
    and on visattn's own. Placement follows the module's paper (see the module docstring): plug-in modules
    in every block at ``position``, BAM at stage boundaries, conv modules in place of the 3x3 convs,
    non-local blocks after every other block of stages 2-3, other context modules after the last stage,
    transforms on the input.

    Args:
        model: the ResNet; modified in place (torchvision blocks that receive a module are rebuilt as visattn
            blocks from their own submodules, so hooks set on those block objects are lost).
        key: registry key (``visattn.list_modules()``).
        position: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` for plug-in modules (SE paper, Fig. 5).
        stages: stage numbers (1 = ``layer1``) to put the module in; default: the paper's.
        blocks: ``{stage: [block indices]}``, single blocks instead of whole stages.
        input_size: network input ``(H, W)`` (or an int), needed for size-bound modules such as ``psa``.
        **kwargs: the module's own keyword arguments (``reduction=8``, ...).

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` has no torchvision / timm / visattn residual block.
        ValueError: a bad position / stage / block, a gate module, or a slot that is already taken.
        KeyError: unknown ``key``.

    Example:
        >>> from visattn.backbones import create
        >>> m = attach(create("resnet18"), "se")
        >>> m.layer1[0].attn.fc1.out_channels
        4
    """
    sites = find_stages(model)
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    meta = _module_info(key)
    sizes = trace_sizes(model, sites, input_size) if meta.size_bound and input_size is not None else None
    return insert(model, sites, key, position=position, stages=stages, blocks=blocks, sizes=sizes,
                  input_size=input_size, kwargs=kwargs)
