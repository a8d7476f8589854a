"""Interrupt a training run right after its first checkpoint, as Ctrl-C would (shared by the resume tests)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from visattn.train import trainer as trainer_mod


def interrupt_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> None:
    """Call ``run`` (a training call) with ``KeyboardInterrupt`` raised once epoch 1 is saved; then un-patch."""
    real_save = trainer_mod.save_checkpoint

    def save_then_crash(folder, epoch, state, **kw):
        path = real_save(folder, epoch, state, **kw)
        if epoch == 1:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(trainer_mod, "save_checkpoint", real_save)
