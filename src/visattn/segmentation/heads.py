"""Decode heads: the context modules placed the way their papers' segmentation heads place them.

Every head maps the last backbone feature map ``(B, C_in, h, w)`` to class scores ``(B, K, h, w)`` (the
segmenter resizes them to the input). The attention modules are built with :func:`visattn.create`, never
copied; a head's ``attention_names`` lists the sub-modules that hold attention, so that tests and ``show``
can find them. Heads that train with extra outputs (DANet's PAM and CAM branches) return them from
:meth:`DecodeHead.forward_train`.

Widths follow mmsegmentation's R50-D8 configs (``in_channels=2048, channels=512``) scaled by the caller:
``channels`` is the head width (512 for ResNet-50/101, 128 for ResNet-18, 64 for the tiny CPU backbone).
The convs are conv (no bias) + BN + ReLU, as mmseg's ``ConvModule``; the classifier is Dropout2d(0.1) +
1x1 conv with bias, as mmseg's ``cls_seg``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import create
from ..layers import ConvNormAct

__all__ = ["DecodeHead", "FCNHead", "NLHead", "CCHead", "DAHead", "OCHead", "ASPOCHead", "PSAHead", "EMAHead",
           "MHSAHead", "TransformerHead", "SAHead", "SPHead", "HEADS", "create_head"]


def _cls(channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))


class DecodeHead(nn.Module):
    """Base class: a classifier ``cls_seg`` and the names of the attention sub-modules."""

    attention_names: tuple[str, ...] = ()
    aux_weights: dict[str, float] = {}

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prediction and the extra outputs the head trains with (name -> logits); none by default."""
        return self(x), {}


class FCNHead(DecodeHead):
    """FCN head (Long et al., CVPR 2015) as mmseg's ``FCNHead``: ``num_convs`` 3x3 convs, optional concat, classifier.

    With ``concat_input`` the input is concatenated with the convs' output and fused by one more 3x3 conv
    (mmseg's ``conv_cat``). mmseg's FCN R50-D8 head is ``num_convs=2, concat_input=True``; its auxiliary
    head on stage 3 is ``num_convs=1, concat_input=False`` at half the width.

    Args:
        in_channels: input channels :math:`C_{in}`.
        channels: width of the convs.
        num_classes: classes :math:`K`.
        num_convs: 3x3 convs before the classifier.
        concat_input: concatenate the input with the convs' output (then a 3x3 fusion conv).
        dropout: dropout before the classifier.

    Shape:
        - Input: :math:`(B, C_{in}, h, w)`
        - Output: :math:`(B, K, h, w)`
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, num_convs: int = 2,
                 concat_input: bool = True, dropout: float = 0.1):
        super().__init__()
        convs = [ConvNormAct(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.conv_cat = ConvNormAct(in_channels + channels, channels, 3) if concat_input else None
        self.cls_seg = _cls(channels, num_classes, dropout)

    def _fuse(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.conv_cat(torch.cat([x, out], dim=1)) if self.conv_cat is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self._fuse(x, self.convs(x)))


class _SandwichHead(DecodeHead):
    """conv 3x3 -> context module -> conv 3x3 -> concat with the input -> conv 3x3 -> classifier.

    The layout of mmseg's ``NLHead`` and ``CCHead`` (both ``FCNHead`` subclasses with ``num_convs=2`` and the
    module between the two convs) and of the official CCNet ``RCCAModule`` (conva, RCCA, convb, bottleneck
    on the concatenation).
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, context: nn.Module, *,
                 dropout: float = 0.1):
        super().__init__()
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = context
        self.conv_out = ConvNormAct(channels, channels, 3)
        self.conv_cat = ConvNormAct(in_channels + channels, channels, 3)
        self.cls_seg = _cls(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_out(self.context(self.conv_in(x)))
        return self.cls_seg(self.conv_cat(torch.cat([x, out], dim=1)))


class NLHead(_SandwichHead):
    """Non-local head: mmseg's ``NLHead`` (Wang et al., CVPR 2018, as a segmentation head).

    conv 3x3, non-local block (embedded Gaussian, inter channels C/2, energies scaled by :math:`d^{-1/2}`:
    mmseg's ``use_scale=True``), conv 3x3, concat with the input, conv 3x3, classifier.

    Differs from mmseg: visattn's ``nonlocal`` has a bias on :math:`W_z` before its BN (mmcv's
    ``NonLocal2d.conv_out`` has none), one extra ``channels`` parameters; both zero-initialise the BN so the
    block starts as the identity.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, create("nonlocal", channels, scaled=True, **kwargs))


class CCHead(_SandwichHead):
    """CCNet head: the official ``RCCAModule`` / mmseg's ``CCHead`` (Huang et al., ICCV 2019).

    conv 3x3, recurrent criss-cross attention (R = 2, shared weights), conv 3x3, concat with the input,
    conv 3x3, classifier. Same layout and widths as mmseg (Q, K at C/8 with biases, gamma starting at 0).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, recurrence: int = 2, **kwargs):
        super().__init__(in_channels, channels, num_classes,
                         create("cc", channels, recurrence=recurrence, **kwargs))


class MHSAHead(_SandwichHead):
    """Multi-head self-attention as a context head (Vaswani et al., 2017), in the non-local head's layout.

    conv 3x3, ``x + MHSA(x)`` (8 heads, the positions as tokens), conv 3x3, concat, conv 3x3, classifier.
    No paper defines this head: it is the NLHead with the non-local block replaced by MHSA and a residual
    around it (the residual of the Transformer's sub-layer; the ``mhsa`` module has none of its own).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, _Residual(create("mhsa", channels, **kwargs)))
        self.attention_names = ("context.inner",)


class TransformerHead(_SandwichHead):
    """A Transformer encoder layer (MHSA + FFN, Add & Norm) as context, in the non-local head's layout.

    Close to SETR-naive's use of self-attention but on the dilated CNN's features, one layer, no position
    embedding by default (``pos_embed="sine"`` adds DETR's).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, **kwargs):
        super().__init__(in_channels, channels, num_classes, create("transformer", channels, **kwargs))


class _Residual(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


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
    """

    attention_names = ("pam", "cam")
    aux_weights = {"pam": 1.0, "cam": 1.0}

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1,
                 reduction: int = 8, branch_loss_weight: float = 1.0):
        super().__init__()
        if (not isinstance(branch_loss_weight, int | float) or isinstance(branch_loss_weight, bool)
                or not 0 <= branch_loss_weight < float("inf")):
            raise ValueError(f"DAHead: branch_loss_weight must be a number >= 0, got {branch_loss_weight!r}")
        w = float(branch_loss_weight)
        self.aux_weights = {"pam": w, "cam": w} if w > 0 else {}
        self.pam_in_conv = ConvNormAct(in_channels, channels, 3)
        self.pam = create("pam", channels, reduction=reduction)
        self.pam_out_conv = ConvNormAct(channels, channels, 3)
        self.pam_cls_seg = _cls(channels, num_classes, dropout) if w > 0 else None
        self.cam_in_conv = ConvNormAct(in_channels, channels, 3)
        self.cam = create("cam", channels)
        self.cam_out_conv = ConvNormAct(channels, channels, 3)
        self.cam_cls_seg = _cls(channels, num_classes, dropout) if w > 0 else None
        self.cls_seg = _cls(channels, num_classes, dropout)

    def _branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pam = self.pam_out_conv(self.pam(self.pam_in_conv(x)))
        cam = self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return pam, cam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pam, cam = self._branches(x)
        return self.cls_seg(pam + cam)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed prediction, and the PAM and CAM branches' own predictions."""
        pam, cam = self._branches(x)
        if self.pam_cls_seg is None:
            return self.cls_seg(pam + cam), {}
        return self.cls_seg(pam + cam), {"pam": self.pam_cls_seg(pam), "cam": self.cam_cls_seg(cam)}


class OCHead(DecodeHead):
    """Base-OC head: the official OCNet ``ResNet_Base_OC`` head (Yuan et al., 2018).

    conv 3x3 -> base-OC module (object context at key / value width ``channels / 2``, concatenated with its
    input, 1x1 conv + BN + ReLU) -> classifier. mmseg has no OCNet head (it has OCRNet, a later paper).

    Differs from the official code: its first conv has a bias and InPlaceABN (leaky ReLU 0.01); here
    conv without bias + BN + ReLU; the module's dropout (official 0.05) is the classifier's 0.1 here.
    """

    attention_names = ("context.context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__()
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("oc", channels, out_channels=channels, **kwargs)
        self.cls_seg = _cls(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.context(self.conv_in(x)))


class ASPOCHead(DecodeHead):
    """ASP-OC head: the official OCNet ``ResNet_ASP_OC`` head (Yuan et al., 2018).

    The ASP-OC module on the backbone output (five branches at ``channels / 2`` each: conv 3x3 + object
    context, 1x1 conv, three dilated 3x3 convs (12, 24, 36), concatenated, 1x1 conv to ``channels``), then
    the classifier. As official (``ASP_OC_Module(2048, 256)`` then a 512 -> K classifier).
    """

    attention_names = ("context.oc",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__()
        self.context = create("asp_oc", in_channels, out_channels=channels, inner_channels=channels // 2, **kwargs)
        self.cls_seg = _cls(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.context(x))


class PSAHead(DecodeHead):
    """PSANet head: the official ``PSANet`` (hszhao/semseg) / mmseg's ``PSAHead`` (Zhao et al., ECCV 2018).

    PSA module on the backbone output (collect + distribute branches at ``C_in / 4``, concatenated,
    projected back to :math:`C_{in}`, concatenated with the input), then conv 3x3 to ``channels`` and the
    classifier. Bound to the feature size (its masks have (2h-1)(2w-1) channels).

    Differs from mmseg / official: visattn's ``psa`` fuses the concatenation ``[x, context]`` back to
    :math:`C_{in}` with a 1x1 conv + BN + ReLU (a module keeps its input width), so the head's 3x3
    bottleneck reads :math:`C_{in}` channels instead of :math:`2 C_{in}`; the mask size is the feature size
    (mmseg: a fixed ``mask_size=(97, 97)`` for 769 crops, with ``shrink_factor=2``).
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, feature_size: tuple[int, int],
                 dropout: float = 0.1, **kwargs):
        super().__init__()
        self.context = create("psa", in_channels, feature_size=tuple(feature_size), **kwargs)
        self.bottleneck = ConvNormAct(in_channels, channels, 3)
        self.cls_seg = _cls(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.bottleneck(self.context(x)))


class EMAHead(DecodeHead):
    """EMANet head: the official EMANet / mmseg's ``EMAHead`` (Li et al., ICCV 2019).

    conv 3x3 to ``channels`` (mmseg's ``ema_channels=512``), EMA unit (conv 1x1 in, K = 64 bases, T = 3 EM
    steps, conv 1x1 + BN out, residual, ReLU), bottleneck conv 3x3 to ``channels / 2`` (mmseg's
    ``channels=256``), concat with the input + conv 3x3 (mmseg's ``concat_input=True``), classifier.

    Differs from mmseg: mmseg freezes the EMA unit's first 1x1 conv (``requires_grad=False``); here it trains,
    as in the official EMANet code. The bases' moving average uses the module's momentum 0.9 (mmseg 0.1 in
    its own convention: the same update).
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__()
        out = channels // 2
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("ema", channels, **kwargs)
        self.bottleneck = ConvNormAct(channels, out, 3)
        self.conv_cat = ConvNormAct(in_channels + out, out, 3)
        self.cls_seg = _cls(out, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(self.context(self.conv_in(x)))
        return self.cls_seg(self.conv_cat(torch.cat([x, out], dim=1)))


class SAHead(DecodeHead):
    """A squeeze-and-attention head (Zhong et al., CVPR 2020), in FCN's layout.

    conv 3x3, then an SA module (``sanet``, a conv replacement: main 3x3 conv times an up-sampled attention
    from a pooled input, plus that attention) in place of FCN's second conv, concat with the input, conv
    3x3, classifier. SANet's full head also merges SA outputs of several backbone stages and trains a
    mask-classification loss; neither is here (the paper has no official code).
    """

    attention_names = ("context",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__()
        self.conv_in = ConvNormAct(in_channels, channels, 3)
        self.context = create("sanet", channels, out_channels=channels, **kwargs)
        self.conv_cat = ConvNormAct(in_channels + channels, channels, 3)
        self.cls_seg = _cls(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.context(self.conv_in(x))
        return self.cls_seg(self.conv_cat(torch.cat([x, out], dim=1)))


class SPHead(DecodeHead):
    """Strip-pooling head: the official SPNet ``SPHead`` (Hou et al., CVPR 2020).

    1x1 conv to ``C_in / 2`` (+ BN + ReLU), two mixed-pooling modules (``mixed_pool``: pyramid pools and
    strip pools, with their residual), conv 3x3 to ``channels / 2``, classifier. The official pool sizes
    (20, 12) are kept; on small feature maps the adaptive pools up-sample, which PyTorch allows.
    """

    attention_names = ("context1", "context2")

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1, **kwargs):
        super().__init__()
        mid, out = in_channels // 2, channels // 2
        self.trans = ConvNormAct(in_channels, mid, 1)
        self.context1 = create("mixed_pool", mid, **kwargs)
        self.context2 = create("mixed_pool", mid, **kwargs)
        self.score = ConvNormAct(mid, out, 3)
        self.cls_seg = _cls(out, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_seg(self.score(self.context2(self.context1(self.trans(x)))))


#: head name -> class. ``fcn`` is the baseline without attention.
HEADS: dict[str, Callable[..., DecodeHead]] = {
    "fcn": FCNHead, "nonlocal": NLHead, "cc": CCHead, "danet": DAHead, "oc": OCHead, "asp_oc": ASPOCHead,
    "psa": PSAHead, "ema": EMAHead, "mhsa": MHSAHead, "transformer": TransformerHead, "sanet": SAHead,
    "strip": SPHead,
}


def create_head(name: str, in_channels: int, channels: int, num_classes: int, *,
                feature_size: tuple[int, int] | None = None, **kwargs) -> DecodeHead:
    """Build decode head ``name`` (one of :data:`HEADS`); ``feature_size`` is needed by ``psa`` only."""
    if name not in HEADS:
        raise ValueError(f"unknown segmentation head {name!r}; choose from {', '.join(HEADS)}")
    if name == "psa":
        if feature_size is None:
            raise ValueError("the psa head is bound to a feature size: give the input size")
        kwargs["feature_size"] = feature_size
    return HEADS[name](in_channels, channels, num_classes, **kwargs)
