"""``attach``: put a registered attention module into a CNN where its paper (or the network's family) puts it.

The dispatcher only: where the module goes is stated by the module (``ModuleInfo.placement``, see
:data:`visattn.registry.PLACEMENTS`) and by the network's family, and realised by

- :mod:`visattn.backbones.resnet_places` for ResNets (torchvision's, timm's, visattn's: SE positions, stages,
  blocks, conv replacement);
- :mod:`visattn.backbones.places` for the other families described in :mod:`visattn.backbones.families`
  (RegNet, EfficientNet / MobileNet, ConvNeXt, ByobNet, DenseNet, VGG-style stacks), for ``where=`` globs, and
  for the network input (transforms).

A new module is placed right by its ``@register(..., placement=...)`` alone; a new family by one
:class:`~visattn.backbones.families.Family` description.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ..registry import info
from .build import factory_kwargs
from .families import FAMILIES
from .places import Where, attach_places, family_places, find_blocks, input_hook, where_places
from .resnet_places import insert, resnet_stages, trace_sizes

__all__ = ["attach"]

Size = tuple[int, int]

# names kept so that models pickled by earlier versions (their hooks refer to these) still load
from ._edit import post_hook as _post_hook  # noqa: E402,F401
from ._edit import pre_hook as _pre_hook  # noqa: E402,F401

_input_hook = input_hook


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


def attach(model: nn.Module, key: str, position: str = "standard", *, where: Where | None = None,
           replace: bool = False, stages: Iterable[int] | None = None,
           blocks: Mapping[int, Iterable[int]] | None = None, input_size: int | Size | None = None,
           **kwargs: Any) -> nn.Module:
    """Insert attention module ``key`` into a CNN, in place, where its paper (or the network's family) puts it.

    Where is read from the module's ``ModuleInfo.placement`` (``visattn.info(key).placement``): in every block
    (SE, CBAM, ...), at the stage ends (BAM, residual attention), after every stage (RGA), after the last stage
    (context modules), every other block of ResNet stages 2 and 3 (non-local), in place of each ResNet block's
    3x3 conv (SK, SC-Conv, SANet), or on the input (STN). ResNets (torchvision's, timm's, visattn's; ResNeXt,
    Wide ResNet, ResNet-D and detection backbones holding one, FrozenBatchNorm2d included) follow
    :mod:`visattn.backbones.resnet_places`; other families (RegNet, EfficientNet / MobileNet, ConvNeXt, timm
    ByobNet, DenseNet, VGG-style stacks) :mod:`visattn.backbones.places`. Anything else: say where with ``where=``.

    attach is all-or-nothing: every module is built before any is inserted, and if any place fails the model
    is left exactly as it was. When channels or sizes must be read, the model runs once on zeros in eval mode;
    its BatchNorm statistics and the train / eval flag of each submodule are left as they were.

    Args:
        model: the network; modified in place (torchvision ResNet blocks that receive a module are rebuilt as
            visattn blocks from their own submodules, so hooks set on those block objects are lost).
        key: registry key (``visattn.list_modules()``).
        position: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` for plug-in modules in ResNet blocks
            (SE paper, Fig. 5).
        where: put the module after every module whose qualified name matches this fnmatch glob (or list of
            globs; ``"features.*.conv2"``), or for which ``where(name, module)`` is true; its channels are read
            by one dry run of the model. Overrides the placement. A channels-last ``(N, H, W, C)`` output (Swin's
            blocks) is refused.
        replace: swap attention modules the network already has (the SE of an EfficientNet, RegNetY, timm
            SE-ResNet, MobileNetV3 ...) for ``key``, where they are and only there. The new module takes the
            replaced one's reduced width (``rd_channels``) unless ``reduction`` / ``rd_channels`` is given, and
            where both hold tensors of the same ranks the network's original state_dict still loads with
            ``strict=True`` (:mod:`visattn.backbones.swap`). Without it, only places that already hold
            attention conflict: a network with SE in every block still takes a module after its stages.
        stages: ResNets: stage numbers (1 = ``layer1``) to put the module in; default: the placement's.
        blocks: ResNets: ``{stage: [block indices]}``, single blocks instead of whole stages.
        input_size: network input ``(H, W)`` (or an int), needed for size-bound modules such as ``psa``, and
            the dry-run size (default 64 x 64).
        **kwargs: the module's own keyword arguments (``reduction=8``, ...). The modules are built on the
            device and in the dtype of the model's parameters unless ``device`` / ``dtype`` are given.

    Returns:
        ``model``.

    Raises:
        ValueError: one line naming the model, the place and the reason: no family matches (the message lists
            what was found and how to use ``where=``), ``where=`` matches nothing, channels cannot be read (or are
            channels-last), the module does not fit, a place is already taken, a bad position / stage / block, a
            gate module.
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
    meta = info(key)
    kwargs = {**factory_kwargs(model), **kwargs}
    try:
        if where is not None:
            if position != "standard" or stages is not None or blocks is not None:
                raise ValueError("attach: position, stages and blocks apply to the ResNet rules, not to where=")
            return attach_places(model, key, where_places(model, where), replace=replace, input_size=input_size,
                                 kwargs=kwargs)
        sites, odd = resnet_stages(model)
        if sites or meta.placement == "input":
            sizes = trace_sizes(model, sites, input_size) if sites and meta.size_bound and input_size else None
            return insert(model, sites, key, position=position, stages=stages, blocks=blocks, sizes=sizes,
                          input_size=input_size, kwargs=kwargs, replace=replace)
        found = find_blocks(model)
        if not found:
            raise _no_family_error(model, odd)
        if position != "standard" or stages is not None or blocks is not None:
            raise ValueError(f"attach: position, stages and blocks apply to ResNet blocks; {found[0].family.name} "
                             "blocks have one place each (use where= to choose others)")
        return attach_places(model, key, family_places(model, key, found, input_size), replace=replace,
                             input_size=input_size, kwargs=kwargs)
    except ValueError as err:
        text = str(err).removeprefix("attach: ")
        raise ValueError(f"attach({type(model).__name__}, {key!r}): {text}") from None
