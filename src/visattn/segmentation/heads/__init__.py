"""Decode heads, one file each on :class:`~.base.DecodeHead`, registered with ``@register_head``.

Every head maps the last backbone feature map ``(B, C_in, h, w)`` to class scores ``(B, K, h, w)`` (the
segmenter resizes them to the input). The attention modules are built with :func:`visattn.create`, never
copied; a head's ``attention_names`` lists the sub-modules that hold attention, so that tests and ``show``
can find them. Heads that train with extra outputs (DANet's PAM and CAM branches) return them from
:meth:`~.base.DecodeHead.forward_train`.

Widths follow mmsegmentation's R50-D8 configs (``in_channels=2048, channels=512``) scaled by the caller:
``channels`` is the head width (512 for ResNet-50/101, 128 for ResNet-18, 64 for the tiny CPU backbone).
The convs are conv (no bias) + BN + ReLU, as mmseg's ``ConvModule``; the classifier is Dropout2d(0.1) +
1x1 conv with bias, as mmseg's ``cls_seg``.

Adding a head is one new file here: a :class:`~.base.DecodeHead` subclass with ``@register_head("name")``,
imported below.
"""

from .base import ContextSandwichHead, DecodeHead
from .builder import HEADS, HeadInfo, create_head, head_info, register_head

# importing each head registers it; this order is the order of HEADS and list_heads()
from .fcn_head import FCNHead  # isort: skip
from .nl_head import NLHead  # isort: skip
from .cc_head import CCHead  # isort: skip
from .da_head import DAHead  # isort: skip
from .oc_head import OCHead  # isort: skip
from .aspoc_head import ASPOCHead  # isort: skip
from .psa_head import PSAHead  # isort: skip
from .ema_head import EMAHead  # isort: skip
from .mhsa_head import MHSAHead  # isort: skip
from .transformer_head import TransformerHead  # isort: skip
from .sa_head import SAHead  # isort: skip
from .sp_head import SPHead  # isort: skip

__all__ = ["DecodeHead", "ContextSandwichHead", "FCNHead", "NLHead", "CCHead", "DAHead", "OCHead", "ASPOCHead",
           "PSAHead", "EMAHead", "MHSAHead", "TransformerHead", "SAHead", "SPHead", "HEADS", "HeadInfo",
           "create_head", "head_info", "register_head"]
