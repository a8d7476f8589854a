"""A timm network as the encoder of a segmenter: ``features_only=True`` at output stride 8 or 16.

Any timm model that supports ``features_only`` and ``output_stride`` (ResNets, ResNeSts, RegNets, ...) gives
its last four feature levels to the decode head (level 4) and the auxiliary head (level 3), as
:class:`~visattn.segmentation.backbone.DilatedResNet` does; timm dilates the last stages itself. Weights come
from a local file only (``pretrained=PATH``: a state_dict in ``.pt`` / ``.pth`` or ``.safetensors``, read
with ``weights_only=True``); nothing is downloaded. The file is the classifier's state_dict (timm's
checkpoints are): its classifier keys are dropped, and every encoder weight must be in it with its shape.

Example:
    >>> import torch
    >>> enc = TimmEncoder("resnet18", output_stride=8)
    >>> [tuple(f.shape[1:]) for f in enc(torch.randn(1, 3, 64, 64))]
    [(64, 16, 16), (128, 8, 8), (256, 8, 8), (512, 8, 8)]
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from ..weights import WeightsError, read_state_dict

__all__ = ["TimmEncoder", "TIMM_PREFIX"]

#: the backbone names of :func:`~visattn.segmentation.create_segmenter` that build a timm encoder: ``timm:NAME``
TIMM_PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise ImportError("a timm:NAME segmentation backbone needs timm: pip install 'visattn[train]'") from None
    return timm


class TimmEncoder(nn.Module):
    r"""timm's ``features_only`` network; returns its last four feature maps (strides 4, 8, and the output stride).

    Args:
        name: a timm model name (``"resnet50"``), without the ``timm:`` prefix.
        output_stride: 8 or 16 (timm dilates the last stages), or 32.
        in_chans: input channels.
        pretrained: a local state_dict file (``.pt``, ``.pth``, ``.safetensors``) of the same timm model, or
            ``None`` (random initialisation).

    Attributes:
        out_channels: channels of the four returned maps.
        output_stride: as given.

    Raises:
        ValueError: an unknown timm name (the closest are suggested), a model without four feature levels or
            without this output stride, or a weights file that does not fit (its first bad key named).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: four maps :math:`(B, C_i, H / s_i, W / s_i)`, the last at the output stride.
    """

    def __init__(self, name: str, *, output_stride: int = 8, in_chans: int = 3, pretrained: str | Path | None = None):
        super().__init__()
        timm = _timm()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"TimmEncoder: output_stride must be 8, 16 or 32, got {output_stride!r}")
        if not timm.is_model(name):
            close = difflib.get_close_matches(name.lower(), timm.list_models(), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
            raise ValueError(f"unknown timm model {name!r}.{hint}")
        kwargs = {} if output_stride == 32 else {"output_stride": output_stride}
        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
        except (TypeError, ValueError, AssertionError, RuntimeError, NotImplementedError) as err:
            message = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"timm:{name} cannot be a segmentation encoder at output stride {output_stride} "
                             f"({type(err).__name__}: {message})") from None
        channels = self.body.feature_info.channels()
        if len(channels) < 4:
            raise ValueError(f"timm:{name} gives {len(channels)} feature levels; a segmenter needs 4")
        self.name, self.output_stride = name, output_stride
        self.out_channels: list[int] = list(channels[-4:])
        if pretrained is not None:
            self.load_weights(pretrained)

    def load_weights(self, source: str | Path) -> int:
        """Load the encoder's weights from a local state_dict file; returns how many tensors were loaded.

        Keys the encoder does not have (the classifier, ``fc.*`` / ``head.*``) are dropped; every encoder key
        must be in the file with its shape.

        Raises:
            WeightsError: the file is unreadable or holds code, lacks an encoder key, or a shape differs.
        """
        state, path = read_state_dict(source)
        own = self.body.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise WeightsError(f"{path}: no weights for timm:{self.name}'s {missing[0]!r} ({len(missing)} of "
                               f"{len(own)} encoder keys missing); is it a timm {self.name} state_dict?")
        for key, value in own.items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise WeightsError(f"{path}: {key!r} has shape {tuple(state[key].shape)} in the file, "
                                   f"{tuple(value.shape)} in timm:{self.name}")
        self.body.load_state_dict({k: state[k] for k in own}, strict=True)
        return len(own)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))[-4:]
