"""One training run, resumable: a classifier with (or without) an attention module, or a segmentation network.

The loop is the same for every task; what differs (data, model, loss, metric) comes from the
:class:`~visattn.train.tasks.Task` of ``config.task``.

Output folder layout::

    config.json        the recipe (TrainConfig)
    metrics.jsonl      one line per finished epoch
    checkpoints/       epoch-NNN.pt, the newest two, written atomically
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

from ..data.loader import ImageData, load_dataset, make_loader, shard  # noqa: F401 (the classification task reads load_dataset here)
from .checkpoint import atomic_write_text, load_latest, save_checkpoint
from .config import NOT_RECIPE, TrainConfig
from .distributed import DistInfo, all_reduce_sum, setup_distributed, teardown_distributed
from .progress import Progress

__all__ = ["train", "build_model", "count_flops", "resolve_device", "ConfigMismatchError"]


class ConfigMismatchError(ValueError):
    """The output folder holds a run with a different recipe."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    return device


def build_model(config: TrainConfig, in_chans: int, num_classes: int,
                input_size: tuple[int, int] | None = None) -> nn.Module:
    """The backbone of ``config`` with its attention module (and input transform), built for ``input_size``."""
    from ..backbones import create as create_backbone
    from ..data.loader import data_shape

    if input_size is None:
        input_size = data_shape(config.dataset, config.image_size, config.dataset_kwargs)[1:]
    extra = {"zero_init_residual": True} if config.zero_init_residual else {}
    return create_backbone(config.backbone, attention=config.attention, attention_kwargs=dict(config.attention_kwargs),
                           position=config.position, in_chans=in_chans, num_classes=num_classes,
                           transform=config.transform, input_size=tuple(input_size), **extra)


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


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """SGD parameter groups: weights with weight decay, norms / biases / scales (ndim <= 1) without.

    Two kinds of parameters learn at their own multiple of ``config.lr`` (each group's ``lr_scale``):
    an input transform (an ST's localisation net, ``"transform": True``) at ``transform_lr_scale``, and a
    segmentation decode head (``"head": True``) at ``head_lr_mult`` when that is not 1. Without either the
    groups are ``[weights, flat]`` as before.
    """
    transform = getattr(model, "transform", None)
    in_transform = {id(p) for p in transform.parameters()} if isinstance(transform, nn.Module) else set()
    head = getattr(model, "decode_head", None) if config.task == "segmentation" else None
    in_head = {id(p) for p in head.parameters()} if head is not None and config.head_lr_mult != 1 else set()
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault((id(p) in in_transform, id(p) in in_head, p.ndim <= 1), []).append(p)
    out = []
    for (is_transform, is_head, flat), params in sorted(groups.items()):
        scale = config.transform_lr_scale if is_transform else config.head_lr_mult if is_head else 1.0
        out.append({"params": params, "weight_decay": 0.0 if flat else config.weight_decay, "lr": config.lr * scale,
                    "lr_scale": scale, "transform": is_transform, "head": is_head})
    return out


def _schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, total: int):
    if config.schedule == "onecycle" and total >= 4:
        # a quarter of the steps warm up (at least two, so very short runs still have both phases)
        # each group's own peak (read from the recipe, not from group["lr"], which a resumed optimizer has moved)
        max_lr = [config.lr * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total,
                                                   pct_start=min(0.5, max(0.25, 2.0 / total)), div_factor=10,
                                                   final_div_factor=100)
    if config.schedule == "poly":  # lr * (1 - step / total) ^ 0.9, the segmentation papers' schedule
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - min(step, total) / total) ** 0.9)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, config: TrainConfig, device: torch.device,
             dist: DistInfo) -> tuple[float, float]:
    """Top-1 accuracy (%) and mean loss on ``data``, each rank on its own slice, summed over ranks."""
    model.eval()
    part = shard(data, dist.rank, dist.world_size)
    correct = loss_sum = 0.0
    for x, y in make_loader(part, 512):
        x, y = x.to(device), y.to(device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=config.amp):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    correct, loss_sum, n = all_reduce_sum([correct, loss_sum, float(len(part))], dist, device)
    model.train()
    return 100.0 * correct / n, loss_sum / n


def _sync_buffers(model: nn.Module, dist: DistInfo) -> None:
    """Give every rank rank 0's buffers (BN statistics, EMA bases) before evaluation.

    Then all ranks evaluate the model that rank 0 saves: DDP broadcasts buffers before each training forward,
    but the last batch updates them again on each rank.
    """
    if dist.enabled:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, 0)


def _amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


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


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] <= last_epoch]
    atomic_write_text(path, "".join(ln + "\n" for ln in lines))


def train(config: TrainConfig, out: str | Path, *, progress: bool = True, log=print) -> dict[str, Any]:
    """Train ``config`` into folder ``out``, resuming from its newest good checkpoint; return the result.

    A finished run (``result.json`` present for at least ``config.epochs`` epochs) is not trained again.
    Under ``torchrun`` the same call trains with DistributedDataParallel; only rank 0 writes.
    """
    out = Path(out)
    device = resolve_device(config.device)
    dist = setup_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(config, out, device, dist, progress, log if dist.is_main else (lambda *a, **k: None))
    finally:
        teardown_distributed(dist)


def _train(config: TrainConfig, out: Path, device: torch.device, dist: DistInfo, progress: bool, log):
    from .tasks import get_task

    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals slow CPU training several-fold
    task = get_task(config)
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
    sample_shape = task.sample_shape(config, train_data)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, sample_shape)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)

    loader = task.train_loader(config, train_data, dist)
    optimizer = torch.optim.SGD(parameter_groups(model, config), lr=config.lr, momentum=config.momentum,
                                nesterov=True)
    scheduler = _schedule(config, optimizer, config.epochs * len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")

    start_epoch, elapsed = 0, 0.0
    resumed = load_latest(out / "checkpoints", report=lambda message: log(f"warning: {message}"))
    if resumed is not None:
        state, path = resumed
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("schedule_steps") == config.epochs * len(loader):
            scheduler.load_state_dict(state["scheduler"])
        else:  # the epoch budget grew: keep the weights, run a fresh schedule over the remaining epochs
            warnings.warn(f"{out}: epochs changed; the learning-rate schedule restarts from epoch "
                          f"{state['epoch'] + 1}", stacklevel=2)
            scheduler = _schedule(config, optimizer, (config.epochs - int(state["epoch"])) * len(loader))
        start_epoch, elapsed = int(state["epoch"]), float(state.get("elapsed", 0.0))
        torch.set_rng_state(state["rng"])
        log(f"resuming {out} from {path.name} (epoch {start_epoch} done)")
    if dist.is_main:
        _truncate_metrics(out / "metrics.jsonl", start_epoch)

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
    with Progress(config.epochs, enabled=progress and dist.is_main) as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            loader.set_epoch(epoch)
            model.train()
            bar.start_epoch(epoch, len(loader))
            t0 = time.perf_counter()
            loss_sum, seen = 0.0, 0
            for i, (x, y) in enumerate(loader):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=config.amp):
                    loss = task.loss(model, config, train_model(x), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at epoch {epoch}, batch {i}; "
                                             "lower --lr or disable --amp")
                loss_sum += loss_value * len(y)
                seen += len(y)
                bar.batch(i, loss_value, len(y) * dist.world_size)
            epoch_time = time.perf_counter() - t0
            elapsed += epoch_time
            _sync_buffers(model, dist)
            scores = task.evaluate(model, val_data, config, device, dist)
            record = {"epoch": epoch, "train_loss": loss_sum / max(1, seen), "val_loss": scores["loss"],
                      **task.record(scores), "lr": scheduler.get_last_lr()[0], "epoch_time_s": epoch_time,
                      "images_per_s": seen * dist.world_size / epoch_time}
            summary = (f"epoch {epoch}/{config.epochs}: train loss {record['train_loss']:.4f}, val loss "
                       f"{scores['loss']:.4f}, {task.summary(scores)}, {record['images_per_s']:,.0f} img/s")
            if bar.enabled:
                bar.message(summary)
            else:  # --no-progress: no bars, but still one line per epoch (log is silent off rank 0)
                log(summary)
            if dist.is_main:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                save_checkpoint(out / "checkpoints", epoch, {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "elapsed": elapsed,
                    "schedule_steps": config.epochs * len(loader), "config": config.to_dict()})

    if scores is None:  # nothing left to train: the last checkpoint is the final model
        scores = task.evaluate(model, val_data, config, device, dist)
    result = {
        **scores, "epochs": config.epochs, "params": params, "flops": flops,
        "train_time_s": elapsed, "images_per_s": config.epochs * len(train_data) / max(elapsed, 1e-9),
        "device": str(device), "world_size": dist.world_size, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "config": config.to_dict(),
    }
    if dist.is_main:
        atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")
    log(f"done: {task.summary(scores)} on {len(val_data):,} val images after {config.epochs} epochs "
        f"({elapsed:.0f} s of training)")
    return result
