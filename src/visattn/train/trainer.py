"""One training run, resumable: a classifier with (or without) an attention module, or a segmentation network.

The loop is the same for every task; what differs (data, model, loss, metric) comes from the
:class:`~visattn.train.tasks.Task` of ``config.task``.

Output folder layout::

    config.json        the recipe (TrainConfig)
    metrics.jsonl      one line per finished epoch
    checkpoints/       epoch-NNN.pt, the newest two (keep_checkpoints), written atomically
    result.json        written when the run is complete
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import atomic_write_text, load_latest, save_checkpoint
from .config import NOT_RECIPE, TrainConfig
from .device import autocast, resolve_device
from .distributed import DistInfo, setup_distributed, teardown_distributed
from .logs import RunLog
from .progress import EpochProgress
from .recipe import Recipe, check_recipe, parameter_groups
from .tasks import Task, get_task

__all__ = ["train", "count_flops", "resolve_device", "ConfigMismatchError", "parameter_groups"]


class ConfigMismatchError(ValueError):
    """The output folder holds a run with a different recipe."""


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass (matmul/conv, as ``torch.utils.flop_counter`` counts them: 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _sync_buffers(model: nn.Module, dist: DistInfo) -> None:
    """Give every rank rank 0's buffers (BN statistics, EMA bases) before evaluation.

    Then all ranks evaluate the model that rank 0 saves: DDP broadcasts buffers before each training forward,
    but the last batch updates them again on each rank.
    """
    if dist.enabled:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, 0)


def _prepare_out(out: Path, config: TrainConfig, is_main: bool) -> None:
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
        if not old.same_run(config):
            diff = {k: (v, config.to_dict()[k]) for k, v in old.to_dict().items()
                    if v != config.to_dict()[k] and k not in NOT_RECIPE}
            raise ConfigMismatchError(f"{out} holds a run with a different recipe (was -> now: {diff}); "
                                      "use another --out or delete that folder")
    if is_main:
        atomic_write_text(cfg_path, json.dumps(config.to_dict(), indent=2) + "\n")


def train(config: TrainConfig, out: str | Path, *, progress: bool = True, log=print,
          tensorboard: bool = False, task: Task | None = None) -> dict[str, Any]:
    """Train ``config`` into folder ``out``, resuming from its newest good checkpoint; return the result.

    A finished run (``result.json`` present for at least ``config.epochs`` epochs) is not trained again.
    Under ``torchrun`` the same call trains with DistributedDataParallel; only rank 0 writes. Every update
    and epoch is logged to CSV / JSONL in ``out`` (:mod:`.logs`), and to TensorBoard with ``tensorboard``.

    ``task`` answers every task question (data, model, loss, evaluation); by default the
    :func:`~.tasks.get_task` of ``config.task``. A tool or a test may give its own (a subclass that builds
    another model, say); the loop calls nothing else task-specific.

    Raises:
        MissingExtraError: (an ``ImportError``) a recipe option needs timm, or ``tensorboard`` the tensorboard
            package, and it is not installed.
    """
    out = Path(out)
    check_recipe(config)
    if tensorboard:
        from .logs import TENSORBOARD_MISSING, tensorboard_available
        from .recipe import MissingExtraError

        if not tensorboard_available():
            raise MissingExtraError(TENSORBOARD_MISSING)
    device = resolve_device(config.device)
    dist = setup_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(config, out, device, dist, progress, log if dist.is_main else (lambda *a, **k: None),
                      tensorboard, task if task is not None else get_task(config))
    finally:
        teardown_distributed(dist)


def _train(config: TrainConfig, out: Path, device: torch.device, dist: DistInfo, progress: bool, log,
           tensorboard: bool, task: Task):
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals slow CPU training several-fold
    result_path = out / "result.json"
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if TrainConfig.from_dict(done["config"]).same_run(config) and done["epochs"] >= config.epochs:
            log(f"{out}: already finished ({task.summary(done)} after {done['epochs']} epochs)")
            return done
    out.mkdir(parents=True, exist_ok=True)
    _prepare_out(out, config, dist.is_main)

    train_data, val_data = task.load_data(config)
    torch.manual_seed(config.seed)
    model = task.build_model(config, train_data)
    run_info = task.run_info(config, train_data)
    if dist.is_main and run_info is not None:  # what rebuilds and uses the model: spec, preprocessing, classes
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2) + "\n")
    if config.pretrained and not task.pretrained_in_build and not (out / "checkpoints").is_dir():
        from ..weights import load_pretrained

        for line in load_pretrained(model, config.pretrained, spec=task.spec).lines():
            log(line)
    sample_shape = task.sample_shape(config, train_data)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, sample_shape)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)

    loader = task.train_loader(config, train_data, dist)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    recipe = Recipe(config, model, len(loader), num_classes=len(train_data.classes), scaler=scaler)

    start_epoch, elapsed = 0, 0.0
    resumed = load_latest(out / "checkpoints", report=lambda message: log(f"warning: {message}"))
    if resumed is not None:
        state, path = resumed
        model.load_state_dict(state["model"])
        same_budget = state.get("schedule_steps") == config.epochs * len(loader)
        if not same_budget:  # the epoch budget grew: keep the weights, run a fresh schedule over the remaining epochs
            warnings.warn(f"{out}: epochs changed; the learning-rate schedule restarts from epoch "
                          f"{state['epoch'] + 1}", stacklevel=2)
            recipe.make_schedule(config.epochs - int(state["epoch"]))
        recipe.load_state_dict(state, schedule=same_budget)
        start_epoch, elapsed = int(state["epoch"]), float(state.get("elapsed", 0.0))
        torch.set_rng_state(state["rng"])
        log(f"resuming {out} from {path.name} (epoch {start_epoch} done)")
    run_log = RunLog(out, start_epoch, tensorboard=tensorboard) if dist.is_main else None

    train_model: nn.Module = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    if config.compile:
        train_model = torch.compile(train_model)

    log(f"{task.describe(config)} ({params:,} params, {flops / 1e6:.1f} MFLOPs) "
        f"on {config.dataset}: {len(train_data):,} train / {len(val_data):,} val images"
        + ("" if getattr(train_data, "in_memory", True) else " (streamed from disk)") + f", {device}"
        + (f", {dist.world_size} processes" if dist.enabled else ""))
    scores: dict[str, Any] | None = None
    ema_scores: dict[str, Any] | None = None
    with EpochProgress(config.epochs, enabled=progress and dist.is_main) as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            loader.set_epoch(epoch)
            recipe.start_epoch(epoch)
            model.train()
            bar.start_epoch(epoch, len(loader))
            t0 = time.perf_counter()
            loss_sum, seen, group = 0.0, 0, []  # group: (loss, images) of the batches of the pending update
            for i, (x, y) in enumerate(loader):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x, y = recipe.mix(x, y)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, config.amp):
                    loss = recipe.loss(task, model, train_model(x), y)
                complete = recipe.backward(loss, i)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at epoch {epoch}, batch {i}; "
                                             "lower --lr or disable --amp")
                loss_sum += loss_value * len(y)
                seen += len(y)
                group.append((loss_value, len(y)))
                if complete:
                    recipe.update(model)
                    if run_log is not None:
                        step = (epoch - 1) * recipe.updates_per_epoch + i // config.accum_steps + 1
                        group_loss = group[0][0] if len(group) == 1 else \
                            sum(v * n for v, n in group) / sum(n for _, n in group)
                        run_log.step({"epoch": epoch, "step": step, "train_loss": group_loss,
                                      "lr": recipe.schedule.get_last_lr()[0],
                                      "images_per_s": seen * dist.world_size / (time.perf_counter() - t0)})
                    group = []
                bar.batch(i, loss_value, len(y) * dist.world_size)
            epoch_time = time.perf_counter() - t0
            elapsed += epoch_time
            _sync_buffers(model, dist)
            record = {"epoch": epoch, "train_loss": loss_sum / max(1, seen), "lr": recipe.schedule.get_last_lr()[0],
                      "epoch_time_s": epoch_time, "images_per_s": seen * dist.world_size / epoch_time}
            evaluated = epoch % config.eval_every == 0 or epoch == config.epochs
            if evaluated:
                scores = task.evaluate(model, val_data, config, device, dist)
                record.update({"val_loss": scores["loss"], **task.record(scores)})
                if recipe.ema is not None:
                    ema_scores = task.evaluate(recipe.ema.module, val_data, config, device, dist)
                    record.update({"ema_val_loss": ema_scores["loss"],
                                   **{f"ema_{k}": v for k, v in task.record(ema_scores).items()}})
            summary = f"epoch {epoch}/{config.epochs}: train loss {record['train_loss']:.4f}"
            if evaluated:
                summary += f", val loss {scores['loss']:.4f}, {task.summary(scores)}"
                if ema_scores is not None:
                    summary += f" (EMA: {task.summary(ema_scores)})"
            summary += f", {record['images_per_s']:,.0f} img/s"
            if bar.enabled:
                bar.message(summary)
            else:  # --no-progress: no bars, but still one line per epoch (log is silent off rank 0)
                log(summary)
            if dist.is_main:
                run_log.epoch(record, step=epoch * recipe.updates_per_epoch)
                keep = config.keep_checkpoints or config.epochs  # 0: every epoch's
                save_checkpoint(out / "checkpoints", epoch, keep=keep, state={
                    "epoch": epoch, "model": model.state_dict(), **recipe.state_dict(),
                    "rng": torch.get_rng_state(), "elapsed": elapsed,
                    "schedule_steps": config.epochs * len(loader), "config": config.to_dict()})
    if run_log is not None:
        run_log.close()

    if scores is None:  # nothing left to train: the last checkpoint is the final model
        scores = task.evaluate(model, val_data, config, device, dist)
        if recipe.ema is not None:
            ema_scores = task.evaluate(recipe.ema.module, val_data, config, device, dist)
    result = {
        **scores, **({"ema": ema_scores} if ema_scores is not None else {}),
        "epochs": config.epochs, "params": params, "flops": flops,
        "train_time_s": elapsed, "images_per_s": config.epochs * len(train_data) / max(elapsed, 1e-9),
        "device": str(device), "world_size": dist.world_size, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "config": config.to_dict(),
    }
    if dist.is_main:
        atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    log(f"done: {task.summary(scores)} on {len(val_data):,} val images after {config.epochs} epochs "
        f"({elapsed:.0f} s of training)")
    return result
