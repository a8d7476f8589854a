"""A segmenter: dilated ResNet + decode head (+ auxiliary FCN head on stage 3), logits at the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DilatedResNet
from .heads import FCNHead, create_head
from .timm_encoder import TIMM_PREFIX, TimmEncoder

__all__ = ["Segmenter", "default_channels", "EVAL_MODES"]

#: how an eval-mode Segmenter predicts: the whole image at once, or sliding windows of the training crop
EVAL_MODES = ("whole", "slide")


def _pair(value: tuple[int, int] | int, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"Segmenter: {name} must be a positive int or (h, w), got {value!r}")
    return int(pair[0]), int(pair[1])


def default_channels(backbone: str, encoder_channels: int | None = None) -> int:
    """Head width for a backbone: mmseg's 512 for ResNet-50/101, 128 for ResNet-18, 64 for the tiny one.

    A timm encoder's head is a quarter of its last feature width (512 for 2048, 128 for 512), between 32
    and 512.
    """
    if backbone.startswith(TIMM_PREFIX) and encoder_channels is not None:
        return max(32, min(512, encoder_channels // 4))
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
        backbone: ``resnet18/50/101`` or ``tiny`` (visattn's dilated ResNets), or ``timm:NAME`` (a timm
            encoder, :class:`~visattn.segmentation.timm_encoder.TimmEncoder`).
        output_stride: 8 or 16 (32: no dilation).
        in_chans: input channels.
        channels: head width (default :func:`default_channels`).
        aux: add the auxiliary FCN head on stage 3.
        aux_weight: its loss weight.
        input_size: the input ``(H, W)``; only the size-bound ``psa`` head uses it.
        deep_stem: ResNetV1c's three-conv stem (visattn's ResNets).
        pretrained: a local state_dict file for a ``timm:NAME`` encoder (nothing is downloaded).
        eval_mode: ``"whole"`` (the whole image at once) or ``"slide"`` (windows of ``crop_size``, averaged:
            mmseg's ``slide_inference``), for eval-mode forward passes; :meth:`set_eval_mode` changes it.
        crop_size: the sliding window ``(h, w)`` (or one side); needed for ``"slide"``.
        stride: the windows' step (default two thirds of the crop, as mmseg's 512 / 341 configs).
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
                 input_size: tuple[int, int] | int | None = None, deep_stem: bool = True,
                 pretrained: str | None = None, eval_mode: str = "whole",
                 crop_size: tuple[int, int] | int | None = None, stride: tuple[int, int] | int | None = None,
                 **head_kwargs):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"Segmenter: num_classes must be >= 1, got {num_classes}")
        if backbone.startswith(TIMM_PREFIX):
            self.backbone = TimmEncoder(backbone[len(TIMM_PREFIX):], output_stride=output_stride, in_chans=in_chans,
                                        pretrained=pretrained)
        elif pretrained is not None:
            raise ValueError(f"Segmenter: pretrained weights are for a timm:NAME encoder, not {backbone!r}")
        else:
            self.backbone = DilatedResNet(backbone, output_stride=output_stride, in_chans=in_chans,
                                          deep_stem=deep_stem)
        channels = (default_channels(backbone, self.backbone.out_channels[3]) if channels is None
                    else int(channels))
        self.in_chans = in_chans
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
        self.set_eval_mode(eval_mode, crop_size, stride)

    def set_eval_mode(self, mode: str, crop_size: tuple[int, int] | int | None = None,
                      stride: tuple[int, int] | int | None = None) -> None:
        """How eval-mode :meth:`forward` predicts: ``"whole"`` image, or ``"slide"`` windows of ``crop_size``.

        Raises:
            ValueError: an unknown mode, ``"slide"`` without a crop size, or a crop / stride below 1.
        """
        if mode not in EVAL_MODES:
            raise ValueError(f"Segmenter: eval_mode must be one of {EVAL_MODES}, got {mode!r}")
        crop = None if crop_size is None else _pair(crop_size, "crop_size")
        if mode == "slide" and crop is None:
            raise ValueError("Segmenter: eval_mode='slide' needs crop_size (the training crop)")
        step = None if stride is None else _pair(stride, "stride")
        if crop is not None and step is None:
            step = (max(1, crop[0] * 2 // 3), max(1, crop[1] * 2 // 3))
        self.eval_mode, self.crop_size, self.stride = mode, crop, step

    def feature_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The decode head's input size for an input of ``size`` (the backbone's strided layers)."""
        if isinstance(self.backbone, TimmEncoder):  # timm's strides and paddings vary: ask the network
            with torch.no_grad():
                was = self.backbone.training
                feats = self.backbone.eval()(torch.zeros(1, self.in_chans, *size))
                self.backbone.train(was)
            return int(feats[3].shape[-2]), int(feats[3].shape[-1])
        out = []
        for n in size:
            for _ in range({8: 3, 16: 4, 32: 5}[self.backbone.output_stride]):
                n = (n - 1) // 2 + 1
            out.append(n)
        return out[0], out[1]

    def whole_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the whole image at once, resized to the input: ``(B, K, H, W)``."""
        return F.interpolate(self.decode_head(self.backbone(x)[3]), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)

    def slide_inference(self, x: torch.Tensor) -> torch.Tensor:
        r"""Logits averaged over windows of :attr:`crop_size` at :attr:`stride`: mmseg's ``slide_inference``.

        Windows start every ``stride`` pixels; the last one in each direction is moved back to end at the
        image's edge, and a window is clipped to an image smaller than the crop. Each window's logits (at the
        window's size) are summed into place and divided by how many windows cover each pixel.

        Shape:
            - Input: :math:`(B, C_{in}, H, W)`
            - Output: :math:`(B, K, H, W)`
        """
        if self.crop_size is None or self.stride is None:
            raise ValueError("Segmenter: slide inference needs crop_size (set_eval_mode('slide', crop_size))")
        (ch, cw), (sh, sw) = self.crop_size, self.stride
        b, _, h, w = x.shape
        rows = max(h - ch + sh - 1, 0) // sh + 1
        cols = max(w - cw + sw - 1, 0) // sw + 1
        logits = x.new_zeros((b, self.num_classes, h, w), dtype=torch.float32)
        count = x.new_zeros((1, 1, h, w), dtype=torch.float32)
        for i in range(rows):
            for j in range(cols):
                y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
                y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
                logits[:, :, y1:y2, x1:x2] += self.whole_inference(x[:, :, y1:y2, x1:x2]).float()
                count[:, :, y1:y2, x1:x2] += 1
        return logits / count

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.training:
            return {"out": self.slide_inference(x) if self.eval_mode == "slide" else self.whole_inference(x)}
        size = x.shape[-2:]
        feats = self.backbone(x)
        out, extra = self.decode_head.forward_train(feats[3])
        if self.aux_head is not None:
            extra = {**extra, "aux": self.aux_head(feats[2])}
        up = {"out": out, **extra}
        return {k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in up.items()}
