"""The training recipe: optimiser, learning-rate schedule, mixup / cutmix, model EMA and gradient accumulation.

The practitioner's parts come from timm (the ``train`` extra): ``create_optimizer_v2`` for AdamW, timm's
cosine and polynomial schedulers for a warm-up, ``Mixup`` with ``SoftTargetCrossEntropy``, and
``ModelEmaV3``. visattn's own default recipe (SGD with Nesterov momentum and a schedule stepped after every
update, no warm-up) is built with torch alone, exactly as before, so that committed results stay valid and
a plain ``pip install visattn`` trains without timm. Asking for a part that needs timm without it installed
raises :class:`MissingExtraError` in one line, before any data is loaded.

Example:
    >>> import torch
    >>> from visattn.train.config import TrainConfig
    >>> model = torch.nn.Linear(4, 3)
    >>> recipe = Recipe(TrainConfig(), model, steps_per_epoch=10)
    >>> type(recipe.optimizer).__name__, recipe.updates_per_epoch
    ('SGD', 10)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import OPTIMIZERS

__all__ = ["Recipe", "LRSchedule", "MissingExtraError", "parameter_groups", "needs_timm", "check_recipe",
           "updates_per_epoch", "topk_correct", "OPTIMIZERS"]



class MissingExtraError(ImportError):
    """An optional part of the recipe was asked for and its package is not installed."""


def needs_timm(config) -> list[str]:
    """The options of ``config`` that are built by timm (empty for visattn's default recipe)."""
    wanted = []
    if config.opt != "sgd":
        wanted.append(f"--opt {config.opt}")
    if config.warmup_epochs > 0 and config.schedule != "onecycle":
        wanted.append("--warmup-epochs")
    if config.mixup > 0 or config.cutmix > 0:
        wanted.append("--mixup / --cutmix")
    if config.model_ema:
        wanted.append("--model-ema")
    return wanted


def check_recipe(config) -> None:
    """Raise :class:`MissingExtraError` (one line) if ``config`` needs timm and it is not installed."""
    wanted = needs_timm(config)
    if not wanted:
        return
    try:
        import timm  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"{', '.join(wanted)} need timm, which is not installed: "
                                "pip install 'visattn[train]'") from None


def updates_per_epoch(batches: int, accum_steps: int) -> int:
    """Optimiser updates in an epoch of ``batches`` batches: one per ``accum_steps``, and one for a partial rest."""
    return -(-batches // accum_steps)


def parameter_groups(model: nn.Module, config) -> list[dict[str, Any]]:
    """Optimiser parameter groups: weights with weight decay, norms / biases / scales (ndim <= 1) without.

    Two kinds of parameters learn at their own multiple of ``config.lr`` (each group's ``lr_scale``):
    an input transform (an ST's localisation net, ``"transform": True``) at ``transform_lr_scale``, and a
    segmentation decode head (``"head": True``) at ``head_lr_scale`` when that is not 1. Without either the
    groups are ``[weights, flat]``.
    """
    transform = getattr(model, "transform", None)
    in_transform = {id(p) for p in transform.parameters()} if isinstance(transform, nn.Module) else set()
    head = getattr(model, "decode_head", None) if config.task == "segmentation" else None
    in_head = {id(p) for p in head.parameters()} if head is not None and config.head_lr_scale != 1 else set()
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault((id(p) in in_transform, id(p) in in_head, p.ndim <= 1), []).append(p)
    out = []
    for (is_transform, is_head, flat), params in sorted(groups.items()):
        scale = config.transform_lr_scale if is_transform else config.head_lr_scale if is_head else 1.0
        out.append({"params": params, "weight_decay": 0.0 if flat else config.weight_decay, "lr": config.lr * scale,
                    "lr_scale": scale, "transform": is_transform, "head": is_head})
    return out


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """``config.opt`` over :func:`parameter_groups`: torch's Nesterov SGD, or timm's ``create_optimizer_v2``."""
    groups = parameter_groups(model, config)
    if config.opt == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.opt not in OPTIMIZERS:
        raise ValueError(f"opt must be one of {OPTIMIZERS}, got {config.opt!r}")
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(groups, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay)


class LRSchedule:
    """The learning rate of every group, set after each optimiser update (``step()``), for ``total`` updates.

    Without warm-up this is visattn's schedule as it always was (torch's OneCycleLR, CosineAnnealingLR, or
    the segmentation papers' poly decay ``(1 - t / T) ^ 0.9``). With ``warmup`` updates, cosine and poly are
    timm's ``CosineLRScheduler`` / ``PolyLRScheduler`` (a linear warm-up from 0, then the decay over the
    remaining updates, stepped per update); onecycle's own warm-up phase becomes ``warmup`` updates long.
    Each group learns at its ``lr_scale`` times the schedule's rate.

    Args:
        config: the recipe (``schedule``, ``lr``).
        optimizer: the optimiser whose groups it sets.
        total: updates the schedule spans.
        warmup: warm-up updates (0: none).
    """

    def __init__(self, config, optimizer: torch.optim.Optimizer, total: int, warmup: int = 0):
        self.optimizer, self.total, self.warmup, self.updates = optimizer, total, warmup, 0
        self._timm = warmup > 0 and config.schedule != "onecycle"
        if self._timm:
            from timm.scheduler import CosineLRScheduler, PolyLRScheduler

            for group in optimizer.param_groups:  # timm multiplies by lr_scale itself: start it from the base lr
                group["initial_lr"] = config.lr
            decay = max(1, total - warmup)
            common = {"warmup_t": warmup, "warmup_lr_init": 0.0, "warmup_prefix": True, "t_in_epochs": False}
            if config.schedule == "cosine":
                self._scheduler = CosineLRScheduler(optimizer, t_initial=decay, lr_min=0.0, **common)
            else:
                self._scheduler = PolyLRScheduler(optimizer, t_initial=decay, power=0.9, lr_min=0.0, **common)
        else:
            self._scheduler = _torch_schedule(config, optimizer, total, warmup)

    def step(self) -> None:
        """After one optimiser update."""
        self.updates += 1
        if self._timm:
            self._scheduler.step_update(self.updates)
        else:
            self._scheduler.step()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "scheduler": self._scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "updates" not in state:  # a checkpoint from before this class: the torch scheduler's own state
            self._scheduler.load_state_dict(state)
            self.updates = int(state.get("last_epoch", 0))
            return
        self.updates = int(state["updates"])
        self._scheduler.load_state_dict(state["scheduler"])
        if self._timm:
            self._scheduler.step_update(self.updates)


def _torch_schedule(config, optimizer: torch.optim.Optimizer, total: int, warmup: int):
    if config.schedule == "onecycle" and total >= 4:
        # a quarter of the steps warm up (at least two, so very short runs still have both phases) unless
        # --warmup-epochs says how many; each group's own peak (read from the recipe, not from group["lr"],
        # which a resumed optimizer has moved)
        max_lr = [config.lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
        pct = min(0.5, max(0.25, 2.0 / total)) if warmup == 0 else min(0.9, (warmup + 1) / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct,
                                                   div_factor=10, final_div_factor=100)
    if config.schedule == "poly":  # lr * (1 - step / total) ^ 0.9, the segmentation papers' schedule
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - min(step, total) / total) ** 0.9)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


class Recipe:
    """Everything of one run's recipe that acts in the training loop, built from its config.

    The loop asks it to :meth:`mix` a batch, compute the :meth:`loss` (the task's, or soft-target
    cross-entropy for mixed batches), :meth:`backward` each micro-batch and tell it whether to step, and
    :meth:`update` (optimiser, scaler, schedule, EMA) when an accumulation group is complete.

    Args:
        config: the recipe (:class:`~visattn.train.config.TrainConfig`).
        model: the network being trained (the EMA copies it).
        steps_per_epoch: batches per epoch of the training loader.
        num_classes: classes of a classification task (needed by mixup / cutmix).
        scaler: AMP gradient scaler (a disabled one when None).
        total_epochs: epochs the schedule spans (default ``config.epochs``; fewer after the budget grew).
    """

    def __init__(self, config, model: nn.Module, steps_per_epoch: int, *, num_classes: int | None = None,
                 scaler: torch.amp.GradScaler | None = None, total_epochs: int | None = None):
        check_recipe(config)
        self.config = config
        self.accum_steps = config.accum_steps
        self.steps_per_epoch = steps_per_epoch
        self.updates_per_epoch = updates_per_epoch(steps_per_epoch, config.accum_steps)
        self.optimizer = build_optimizer(model, config)
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda", enabled=False)
        self.schedule = self.make_schedule(total_epochs if total_epochs is not None else config.epochs)
        self.mixup = None
        if config.mixup > 0 or config.cutmix > 0:
            if config.task != "classification":
                raise ValueError("--mixup / --cutmix mix labels of whole images: classification only")
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix,
                               label_smoothing=config.label_smoothing, num_classes=num_classes)
        self.ema = None
        if config.model_ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=config.model_ema_decay)
        self._in_group = 0

    def make_schedule(self, epochs: int) -> LRSchedule:
        """A schedule over ``epochs`` epochs of updates (a resumed run with more epochs gets a fresh one)."""
        total = epochs * self.updates_per_epoch
        warmup = round(self.config.warmup_epochs * self.updates_per_epoch)
        self.schedule = LRSchedule(self.config, self.optimizer, total, warmup)
        return self.schedule

    def start_epoch(self, epoch: int) -> None:
        """Seed mixup's draws (timm takes them from numpy) so that a resumed epoch mixes as the first run did."""
        self._in_group = 0
        if self.mixup is not None:
            import numpy as np

            np.random.seed((self.config.seed * 100_003 + epoch) % 2**32)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup / cutmix of the batch (labels become soft ``(B, K)``), or the batch unchanged.

        timm mixes a batch with its reverse, so an odd batch (a last, short one) loses its last image.
        """
        if self.mixup is None:
            return x, y
        if len(x) % 2:
            x, y = x[:-1], y[:-1]
        if len(x) == 0:
            raise ValueError("--mixup / --cutmix need batches of at least two images")
        return self.mixup(x, y)

    def loss(self, task, model: nn.Module, output, target: torch.Tensor) -> torch.Tensor:
        """The task's loss, or soft-target cross-entropy (timm's SoftTargetCrossEntropy) for a mixed batch."""
        if self.mixup is not None:
            from timm.loss import SoftTargetCrossEntropy

            return SoftTargetCrossEntropy()(output.float(), target)
        return task.loss(model, self.config, output, target)

    def backward(self, loss: torch.Tensor, index: int) -> bool:
        """Back-propagate batch ``index``'s loss; True when its accumulation group is complete (then update)."""
        first = index % self.accum_steps == 0
        if first:
            self.optimizer.zero_grad(set_to_none=True)
            remaining = self.steps_per_epoch - index
            self._in_group = min(self.accum_steps, remaining)  # the last group of an epoch may be shorter
        scaled = loss if self._in_group == 1 else loss / self._in_group
        self.scaler.scale(scaled).backward()
        return (index + 1) % self.accum_steps == 0 or index + 1 == self.steps_per_epoch

    def update(self, model: nn.Module) -> None:
        """Optimiser step (through the AMP scaler), schedule step and EMA update, after a complete group."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(model, step=self.schedule.updates)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume this recipe (the EMA weights included)."""
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, schedule: bool = True) -> None:
        """Resume from a checkpoint; ``schedule=False`` keeps the fresh schedule (the epoch budget changed)."""
        self.optimizer.load_state_dict(state["optimizer"])
        if schedule:
            self.schedule.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """How many rows of ``logits`` have ``target`` among their ``k`` largest entries.

    Shape:
        logits: ``(N, K)``; target: ``(N,)`` class indices.
    """
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices  # [N, k]
    return float((top == target[:, None]).any(1).sum())

