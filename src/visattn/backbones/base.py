"""What visattn's own classification networks share, and the catalogue they are registered in.

A backbone is one builder (a class, or a function returning the model) with one decorator::

    @register_backbone("plaincnn", family="plain")
    class PlainCNN(AttentionBackbone):
        ...

or, for one class in several sizes, ``register_backbone("resnet18")(backbone_variant(ResNet, "resnet18", doc,
block=BasicBlock, layers=[2, 2, 2, 2]))``.

:func:`~visattn.backbones.resnet.create` builds it by name and
:func:`~visattn.backbones.resnet.list_backbones` lists it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..catalogue import Catalogue
from .blocks import BasicBlock, Bottleneck
from .resnet_places import ResNetBlockSite, find_stages, insert

__all__ = ["AttentionBackbone", "BackboneInfo", "BACKBONES", "register_backbone", "backbone_info", "backbone_variant",
           "pair"]

Size = tuple[int, int]


@dataclass(frozen=True)
class BackboneInfo:
    """One registered backbone.

    Attributes:
        key: its name (``"resnet50"``).
        builder: the class or function that builds it; takes the keyword arguments of ``create``.
        family: the layout it belongs to (``"resnet"``, ``"cifar-resnet"``, ``"plain"``).
        summary: the first line of the builder's docstring.
    """

    key: str
    builder: Callable[..., nn.Module]
    family: str = ""
    summary: str = ""


def _backbone_info(key: str, builder: Callable[..., nn.Module], *, family: str = "") -> BackboneInfo:
    doc = (builder.__doc__ or "").strip()
    return BackboneInfo(key, builder, family, doc.splitlines()[0] if doc else "")


#: visattn's own backbones by name, filled by :func:`register_backbone` when :mod:`visattn.backbones` loads
BACKBONES: Catalogue[BackboneInfo] = Catalogue(
    "backbone", _backbone_info, package="visattn.backbones",
    lister="`visattn.backbones.list_backbones()` lists all names.")


def register_backbone(key: str, *, family: str = "") -> Callable[[Any], Any]:
    """Decorator adding a backbone builder (a class or a function) to :data:`BACKBONES` under ``key``.

    The builder takes the keyword arguments of :func:`~visattn.backbones.resnet.create`'s model (``attention``,
    ``attention_kwargs``, ``position``, ``stages``, ``num_classes``, ``in_chans``, ...).
    """
    return BACKBONES.decorator(key, family=family)


def backbone_variant(cls: type[nn.Module], name: str, doc: str, **fixed: Any) -> Callable[..., nn.Module]:
    """A builder of ``cls`` with some arguments ``fixed`` (a depth, a block type), for :func:`register_backbone`.

    The builder's signature is ``cls``'s keyword-only arguments less the fixed ones, so that callers can
    tell the network's own arguments from an attention module's (as :func:`~visattn.backbones.resnet.create`
    does).
    """

    def build(**kwargs: Any) -> nn.Module:
        return cls(**fixed, **kwargs)

    params = [p for p in inspect.signature(cls).parameters.values()
              if p.kind is p.KEYWORD_ONLY and p.name not in fixed]
    build.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


def backbone_info(name: str) -> BackboneInfo:
    """The :class:`BackboneInfo` of ``name``; ``KeyError`` with the closest names if unknown."""
    return BACKBONES.get(name)


def _down(n: int, stride: int) -> int:
    """Output length of a conv / pool with kernel k, padding (k-1)/2 and ``stride`` (k = 1, 3, 7)."""
    return (n - 1) // stride + 1


def pair(size: int | Iterable[int]) -> Size:
    """``(H, W)`` of an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class AttentionBackbone(nn.Module):
    """What visattn's own classification nets share: the transform slot, weight init, attention insertion."""

    _visattn_transform_slot = True  # forward applies ``self.transform`` itself (attach needs no hook)
    transform: nn.Module | None
    num_stages: int
    stem_strides: tuple[int, ...]  # strides of the stem's conv / pool layers

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's initialisation, done before any attention module exists so that their own
        # initialisation (zero-initialised last layers, gamma = 0) is kept.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _block_sizes(self, sites: list[list[ResNetBlockSite]], input_size: Size) -> dict[str, tuple[Size, Size]]:
        h, w = input_size
        for stride in self.stem_strides:
            h, w = _down(h, stride), _down(w, stride)
        sizes = {}
        for site in (s for st in sites for s in st):
            stride = int(site.block.stride)
            out = (_down(h, stride), _down(w, stride))
            sizes[site.name] = ((h, w), out)
            h, w = out
        return sizes

    def _insert_attention(self, attention: str | None, attention_kwargs: Mapping[str, Any] | None, position: str,
                          stages: Iterable[int] | None, blocks: Mapping[int, Iterable[int]] | None,
                          input_size: int | Iterable[int], in_chans: int) -> None:
        self.attention = attention
        self.transform = None
        if attention is None:
            if attention_kwargs or position != "standard" or stages is not None or blocks is not None:
                raise ValueError(f"{type(self).__name__}: attention_kwargs / position / stages / blocks need an "
                                 "attention key")
            return
        input_size = pair(input_size)
        sites = find_stages(self)
        insert(self, sites, attention, position=position, stages=stages, blocks=blocks,
               sizes=self._block_sizes(sites, input_size), input_size=input_size, in_chans=in_chans,
               kwargs=attention_kwargs)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling and the classifier."""
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
