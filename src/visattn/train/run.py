"""Open a finished run folder: its config, task, model with weights, preprocessing and class names.

A run folder written by :func:`visattn.train.train` holds ``config.json`` (the recipe), ``run.json`` (the
model's spec, its preprocessing and the class names) and ``checkpoints/``. :func:`load_run` rebuilds the
model from them and loads the newest good checkpoint; predict, export, fine-tuning and ``visattn show`` use
it. An older folder without ``run.json`` opens too: its task loads the run's data and builds the model as
training did, which gives the spec, the class names and the preprocessing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError, CorruptCheckpointWarning, epoch_checkpoints, load_latest, read_checkpoint
from .config import TrainConfig

__all__ = ["Run", "Preprocess", "load_run"]


@dataclass(frozen=True)
class Preprocess:
    """How an image tensor becomes the model's input: the per-channel normalisation of training.

    Attributes:
        channels: image channels.
        mean: per-channel mean of the training images, in [0, 1] units.
        std: per-channel standard deviation, in [0, 1] units.
        input_size: ``(H, W)`` the network was trained at, when the run states it (a classifier takes others).

    Shape:
        - Input: ``(B, C, H, W)`` or ``(C, H, W)``, uint8 in [0, 255] or floating point in [0, 1].
        - Output: float32, the same shape, ``(x - mean) / std`` per channel.
    """

    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """From a run's ``preprocessing`` (``channels`` or ``in_chans``; resize / crop notes are not needed)."""
        mean = tuple(float(v) for v in data["mean"])
        size = data.get("input_size")
        return cls(int(data.get("channels", data.get("in_chans", len(mean)))), mean,
                   tuple(float(v) for v in data["std"]), None if size is None else tuple(int(v) for v in size))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` normalised as in training (see the class's Shape section).

        Raises:
            ValueError: a rank other than 3 or 4, or a channel count other than :attr:`channels`.
        """
        if images.dim() not in (3, 4):
            raise ValueError(f"Preprocess: expected (B, C, H, W) or (C, H, W) images, got shape {tuple(images.shape)}")
        if images.shape[-3] != self.channels:
            raise ValueError(f"Preprocess: the run was trained on {self.channels}-channel images, "
                             f"got {images.shape[-3]}")
        x = images.float() if images.is_floating_point() else images.float() / 255
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


@dataclass
class Run:
    """An opened run folder.

    Attributes:
        path: the folder.
        config: its recipe.
        task: the task object of ``config.task``.
        model: the network with the checkpoint's weights, in eval mode.
        preprocessing: input size, channels, mean and std (and crop share) of the images the model takes.
        class_names: the class names, in the order of the model's outputs.
        spec: the model spec that rebuilds it (None for a segmentation run).
        epoch: the epoch of the loaded checkpoint.
        result: ``result.json`` of a finished run, else None.
    """

    path: Path
    config: TrainConfig
    task: Any
    model: nn.Module
    preprocessing: dict[str, Any]
    class_names: list[str]
    spec: dict[str, Any] | None
    epoch: int
    result: dict[str, Any] | None

    @property
    def preprocess(self) -> dict[str, Any]:
        """The run's preprocessing as saved (a dict: it keeps crop_pct and interpolation for predict)."""
        return self.preprocessing

    @property
    def normalize(self) -> Preprocess:
        """The normalisation of training as a callable: ``run.model(run.normalize(images))``."""
        return Preprocess.from_dict(self.preprocessing)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None


def _epoch_checkpoint(folder: Path, epoch: int) -> dict[str, Any]:
    paths = epoch_checkpoints(folder / "checkpoints")
    if epoch not in paths:
        kept = ", ".join(map(str, paths)) or "none"
        raise ValueError(f"{folder}: no checkpoint of epoch {epoch} (kept: {kept}; train with --keep-checkpoints 0 "
                         "to keep every epoch's)")
    try:
        return read_checkpoint(paths[epoch])
    except CheckpointError as err:
        raise ValueError(str(err)) from None


def load_run(path: str | Path, *, ema: bool = False, data_dir: str | None = None,
             report: Callable[[str], None] | None = None, epoch: int | None = None) -> Run:
    """Open the run folder ``path`` (its newest good checkpoint); ``ema``: its EMA weights when it kept them.

    Args:
        path: a folder written by :func:`visattn.train.train`.
        ema: load the EMA weights when the checkpoint kept them.
        epoch: the checkpoint of this epoch instead of the newest (a run trained with ``keep_checkpoints=0``
            keeps every epoch's).
        data_dir: the data folder, when not where the run found it (a segmentation run, or an older folder
            without run.json, reads its data to open).
        report: where a one-line note about a damaged newer checkpoint goes (default: a warning).

    Raises:
        ValueError: not a run folder, an unreadable config, no readable checkpoint (the first reason), no
            checkpoint of ``epoch`` (the epochs kept are named), or weights that do not fit (one line).
    """
    from .tasks import get_task

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a run folder (no config.json); train one with `visattn train --out {folder}`")
    try:
        config = TrainConfig.from_dict(_read_json(folder / "config.json"))
    except (TypeError, KeyError) as err:
        raise ValueError(f"{folder / 'config.json'}: unreadable ({type(err).__name__}: {err})") from None
    if data_dir:
        config = replace(config, data_dir=data_dir)
    task = get_task(config)
    reasons: list[str] = []

    def note(message: str) -> None:
        reasons.append(message)
        if report is not None:
            report(message)
        else:
            warnings.warn(message, CorruptCheckpointWarning, stacklevel=3)

    if epoch is not None:
        found = (_epoch_checkpoint(folder, epoch), None)
    else:
        found = load_latest(folder / "checkpoints", report=note)
    if found is None:
        why = f" ({reasons[-1].split('; ')[0]})" if reasons else ""
        raise ValueError(f"{folder}: no readable checkpoint in {folder / 'checkpoints'}{why}")
    state, _ = found
    info = _read_json(folder / "run.json") if (folder / "run.json").is_file() else {}
    spec = info.get("model")
    if config.task == "segmentation":
        model = task.build_model(config)
        _, val = task.load_data(replace(config, train_limit=1, val_limit=1))
        classes = list(val.classes)
        preprocessing = info.get("preprocessing") or {"mean": list(val.mean), "std": list(val.std),
                                                      "channels": len(val.mean)}
    else:
        if spec is None:  # an older folder: the task builds the model from the run's data, as training did
            try:
                train, _ = task.load_data(config)
            except (OSError, ValueError) as err:
                raise ValueError(f"{folder}: no run.json, and its data cannot be read to rebuild the model "
                                 f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                                 "pass the data folder") from None
            model = task.build_model(config, train)
            info = task.run_info(config, train) or {}
            spec = info.get("model")
        else:
            from ..backbones.external import classifier_from_spec

            model = classifier_from_spec(spec)
        classes = list(info["classes"])
        preprocessing = dict(info["preprocessing"])
    weights = state["ema"] if ema and "ema" in state else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{folder}: the checkpoint does not fit the model of its run.json "
                         f"({str(err).splitlines()[0]})") from None
    result = _read_json(folder / "result.json") if (folder / "result.json").is_file() else None
    return Run(folder, config, task, model.eval(), preprocessing, classes, spec, int(state["epoch"]), result)
