"""What a module inherits when it takes the place of a network's own attention module (``replace=True``).

A network's own SE (torchvision's ``SqueezeExcitation``, timm's ``SqueezeExcite`` / ``SEModule``, ...) has the
widths the network was designed and trained with. The module put in its place

- takes its reduced width: ``rd_channels`` is read from the replaced module's first layer that reads the
  place's channels (torchvision's ``fc1``, timm's ``conv_reduce`` / ``fc1``), unless the caller passes
  ``reduction`` or ``rd_channels``, and only for modules that take ``rd_channels``;
- keeps its checkpoint loadable: when the two modules hold as many tensors, of the same ranks in the same order,
  under other names (timm's ``conv_reduce`` / ``conv_expand`` against visattn's ``fc1`` / ``fc2``), a load-state-dict
  pre-hook renames the old keys, so the network's original state_dict loads with ``strict=True``. Saving writes
  the new names. (With other widths, given by the caller, strict loading then reports the size mismatch.)

A module visattn put there itself (a visattn module) passes nothing on: its widths were the user's choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import info

__all__ = ["RenameCheckpointKeys", "inherit_widths", "is_networks_own", "keep_checkpoint_keys", "reduced_width"]


def is_networks_own(module: nn.Module | None) -> bool:
    """Whether ``module`` is an attention module of the network itself (not one visattn put there)."""
    return module is not None and not type(module).__module__.startswith("visattn.")


def reduced_width(module: nn.Module, channels: int) -> int | None:
    """Output width of ``module``'s first conv / linear layer that reads ``channels`` channels (its squeeze)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == channels:
            return int(m.out_channels)
        if isinstance(m, nn.Linear) and m.in_features == channels:
            return int(m.out_features)
    return None


def inherit_widths(key: str, kwargs: Mapping[str, Any], replaced: nn.Module | None, channels: int) -> dict[str, Any]:
    """``kwargs`` with ``rd_channels`` of the replaced module added, where the rules above say so."""
    kwargs = dict(kwargs)
    if (not is_networks_own(replaced) or "rd_channels" not in info(key).defaults
            or {"reduction", "rd_channels"} & set(kwargs)):
        return kwargs
    width = reduced_width(replaced, channels)
    if width is not None:
        kwargs["rd_channels"] = width
    return kwargs


class RenameCheckpointKeys:
    """Load-state-dict pre-hook renaming a replaced module's keys (``conv_reduce.weight``) to the new module's.

    Args:
        renames: ``{old name: new name}``, relative to the module.
    """

    def __init__(self, renames: Mapping[str, str]):
        self.renames = dict(renames)

    def __call__(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for old, new in self.renames.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)

    def __repr__(self) -> str:
        return f"RenameCheckpointKeys({self.renames!r})"


def keep_checkpoint_keys(new: nn.Module, replaced: nn.Module | None) -> None:
    """Let ``new`` load ``replaced``'s state_dict when the two hold tensors of the same ranks in the same order."""
    if not is_networks_own(replaced):
        return
    old_sd, new_sd = replaced.state_dict(), new.state_dict()
    if len(old_sd) != len(new_sd):
        return
    if any(a.dim() != b.dim() for a, b in zip(old_sd.values(), new_sd.values(), strict=True)):
        return
    renames = {old: name for old, name in zip(old_sd, new_sd, strict=True) if old != name}
    if renames:
        new.register_load_state_dict_pre_hook(RenameCheckpointKeys(renames))
