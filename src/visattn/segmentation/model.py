"""A segmenter: dilated ResNet + decode head (+ auxiliary FCN head on stage 3), logits at the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DilatedResNet
from .heads import FCNHead, create_head

__all__ = ["Segmenter", "default_channels"]


def default_channels(backbone: str) -> int:
    """Head width for a backbone: mmseg's 512 for ResNet-50/101, 128 for ResNet-18, 64 for the tiny one."""
    return {"resnet18": 128, "tiny": 64}.get(backbone, 512)


class Segmenter(nn.Module):
    r"""Encoder-decoder segmentation network, the shape of mmseg's ``EncoderDecoder`` with ``test_cfg=whole``.

    The decode head reads stage 4, the optional auxiliary FCN head (one 3x3 conv at half the head width, no
    concat: mmseg's ``auxiliary_head``, loss weight 0.4 as PSPNet) reads stage 3; both are resized
    bilinearly (``align_corners=False``) to the input size.

    In training mode :meth:`forward` returns a dict ``{"out": logits, "aux": ..., "pam": ..., ...}`` of every
    output the losses need, with the weights in :attr:`loss_weights`; in eval mode the dict has ``"out"``
    only.

    Args:
        head: decode head name (:data:`visattn.segmentation.heads.HEADS`).
        num_classes: classes :math:`K`.
        backbone: ``resnet18/50/101`` or ``tiny``.
        output_stride: 8 or 16 (32: no dilation).
        in_chans: input channels.
        channels: head width (default :func:`default_channels`).
        aux: add the auxiliary FCN head on stage 3.
        aux_weight: its loss weight.
        input_size: the input ``(H, W)``; only the size-bound ``psa`` head uses it.
        deep_stem: ResNetV1c's three-conv stem.
        **head_kwargs: arguments of the head's attention module.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: ``{"out": (B, K, H, W), ...}``

    Example:
        >>> m = Segmenter("cc", 5, backbone="tiny", in_chans=1).eval()
        >>> m(torch.randn(1, 1, 37, 50))["out"].shape
        torch.Size([1, 5, 37, 50])
    """

    def __init__(self, head: str, num_classes: int, *, backbone: str = "resnet50", output_stride: int = 8,
                 in_chans: int = 3, channels: int | None = None, aux: bool = True, aux_weight: float = 0.4,
                 input_size: tuple[int, int] | int | None = None, deep_stem: bool = True, **head_kwargs):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"Segmenter: num_classes must be >= 1, got {num_classes}")
        channels = default_channels(backbone) if channels is None else int(channels)
        self.backbone = DilatedResNet(backbone, output_stride=output_stride, in_chans=in_chans, deep_stem=deep_stem)
        feature_size = None
        if input_size is not None:
            h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
            feature_size = self.feature_size((h, w))
        self.head_name = head
        self.decode_head = create_head(head, self.backbone.out_channels[3], channels, num_classes,
                                       feature_size=feature_size, **head_kwargs)
        self.aux_head = (FCNHead(self.backbone.out_channels[2], channels // 2, num_classes, num_convs=1,
                                 concat_input=False) if aux else None)
        self.loss_weights = {"out": 1.0, **({"aux": float(aux_weight)} if aux else {}),
                             **self.decode_head.aux_weights}
        self.num_classes = num_classes

    def feature_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The decode head's input size for an input of ``size`` (the backbone's strided layers)."""
        out = []
        for n in size:
            for _ in range({8: 3, 16: 4, 32: 5}[self.backbone.output_stride]):
                n = (n - 1) // 2 + 1
            out.append(n)
        return out[0], out[1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        feats = self.backbone(x)
        if self.training:
            out, extra = self.decode_head.forward_train(feats[3])
            if self.aux_head is not None:
                extra = {**extra, "aux": self.aux_head(feats[2])}
        else:
            out, extra = self.decode_head(feats[3]), {}
        up = {"out": out, **extra}
        return {k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in up.items()}
