"""DANet head: the official ``DANetHead`` / mmseg's ``DAHead`` (Fu et al., CVPR 2019)."""

from __future__ import annotations

import torch

from ... import create
from ...layers import ConvNormAct
from .base import DecodeHead
from .builder import register_head

__all__ = ["DAHead"]


@register_head("danet", modules=("pam", "cam"))
class DAHead(DecodeHead):
    """DANet head: the official ``DANetHead`` / mmseg's ``DAHead`` (Fu et al., CVPR 2019).

    Two branches, each conv 3x3 in -> attention (PAM: Q, K at ``channels / 8``; CAM: parameter-free) ->
    conv 3x3 out; their sum goes to the classifier. :meth:`forward_train` adds each branch's own classifier
    output, which the paper and mmseg train with (loss weight 1 each, as mmseg's ``DAHead.losses``).

    Same layout and widths as the official code and mmseg (in-convs 2048 -> 512, PAM's Q and K at 64,
    Dropout2d(0.1) before each of the three classifiers).

    ``branch_loss_weight`` sets the two branch losses' weight (1, the default, as the paper and mmseg); 0 drops
    them and the two branch classifiers, leaving the attention alone to explain a difference to FCN (an
    ablation, not in the paper).

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    attention_names = ("pam", "cam")
    aux_weights = {"pam": 1.0, "cam": 1.0}

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1,
                 reduction: int = 8, branch_loss_weight: float = 1.0):
        super().__init__(in_channels, channels, num_classes, dropout=dropout)
        if (not isinstance(branch_loss_weight, int | float) or isinstance(branch_loss_weight, bool)
                or not 0 <= branch_loss_weight < float("inf")):
            raise ValueError(f"DAHead: branch_loss_weight must be a number >= 0, got {branch_loss_weight!r}")
        w = float(branch_loss_weight)
        self.aux_weights = {"pam": w, "cam": w} if w > 0 else {}
        self.pam_in_conv = ConvNormAct(in_channels, channels, 3)
        self.pam = create("pam", channels, reduction=reduction)
        self.pam_out_conv = ConvNormAct(channels, channels, 3)
        self.pam_cls_seg = self.new_classifier() if w > 0 else None
        self.cam_in_conv = ConvNormAct(in_channels, channels, 3)
        self.cam = create("cam", channels)
        self.cam_out_conv = ConvNormAct(channels, channels, 3)
        self.cam_cls_seg = self.new_classifier() if w > 0 else None
        self.build_classifier()

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The PAM and CAM branches' features, each ``(B, channels, h, w)``."""
        pam = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return pam, cam

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pam, cam = self.branches(x)
        return pam + cam

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed prediction, and the PAM and CAM branches' own predictions."""
        pam, cam = self.branches(x)
        if self.pam_cls_seg is None:
            return self.cls_seg(pam + cam), {}
        return self.cls_seg(pam + cam), {"pam": self.pam_cls_seg(pam), "cam": self.cam_cls_seg(cam)}
