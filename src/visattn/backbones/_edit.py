"""All-or-nothing edits of a model: every change is recorded and undone, in reverse, when a later step fails.

Also the two ways a module is put next to another without changing its state_dict keys: after it
(:func:`put_after`) or before it (:func:`put_before`), marked with :data:`ATTACHED`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["ATTACHED", "Journal", "all_or_nothing", "post_hook", "pre_hook", "put_after", "put_before",
           "runs_children_in_order"]

#: attribute marking a module whose ``attn`` was put there by attach (its value: "after" or "before").
ATTACHED = "_visattn_attached"


class Journal:
    """Records attribute changes and hooks so that they can be undone."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        """``setattr(obj, name, value)``, remembering the old value (or that there was none)."""
        had = hasattr(obj, name)
        old = getattr(obj, name, None)
        was_child = isinstance(obj, nn.Module) and name in obj._modules
        setattr(obj, name, value)

        def undo() -> None:
            if isinstance(obj, nn.Module) and not was_child and name in obj._modules:
                # a plain attribute (timm's `se = None`) became a child: make it a plain attribute again
                del obj._modules[name]
                if had:
                    object.__setattr__(obj, name, old)
            elif had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)

        self._undo.append(undo)

    def hook(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self._undo.append(handle.remove)

    def rollback(self) -> None:
        while self._undo:
            self._undo.pop()()


@contextmanager
def all_or_nothing() -> Iterator[Journal]:
    """A :class:`Journal` whose changes are undone if the block raises."""
    journal = Journal()
    try:
        yield journal
    except BaseException:
        journal.rollback()
        raise


def pre_hook(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook applying ``module.attn`` to the module's input."""
    return (module.attn(args[0]), *args[1:])


def post_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook applying ``module.attn`` to the module's output."""
    return module.attn(output)


def runs_children_in_order(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Sequential`` whose forward runs its children in order (a new child runs last)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def put_after(journal: Journal, target: nn.Module, attn: nn.Module) -> None:
    """Make ``attn`` run on ``target``'s output, stored as ``target.attn``.

    In a plain ``nn.Sequential`` the module becomes its last element; elsewhere a forward hook applies it. When
    ``target`` already has an ``attn`` put there before, only the module is swapped.
    """
    again = getattr(target, ATTACHED, None) == "after"
    journal.set(target, "attn", attn)
    journal.set(target, ATTACHED, "after")
    if not again and not runs_children_in_order(target):
        journal.hook(target.register_forward_hook(post_hook))


def put_before(journal: Journal, target: nn.Module, attn: nn.Module) -> None:
    """Make ``attn`` run on ``target``'s input (stored as ``target.attn``, applied by a forward pre-hook)."""
    again = getattr(target, ATTACHED, None) == "before"
    journal.set(target, "attn", attn)
    journal.set(target, ATTACHED, "before")
    if not again:
        journal.hook(target.register_forward_pre_hook(pre_hook))
