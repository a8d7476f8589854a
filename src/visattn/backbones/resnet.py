"""ResNets with attention slots: ImageNet ResNet-18/34/50/101/152 and ResNeXt-50, CIFAR ResNet-20/32/44/56/110.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016. https://arxiv.org/abs/1512.03385
Xie et al. "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017 (ResNeXt).

The ImageNet models have torchvision's exact layout and module names (``conv1, bn1, relu, maxpool,
layer1..4, avgpool, fc``; blocks ``conv1, bn1, conv2, bn2, (conv3, bn3), downsample``) and its
initialisation, so with ``attention=None`` torchvision's weights load with ``strict=True``
(ResNet-50: 25,557,032 parameters). With an attention key, the attention modules add state_dict keys
(``layer1.0.attn.*``) and the backbone keys stay torchvision's, so pretrained weights load with
``strict=False`` and only the attention keys missing (conv-role modules replace the 3x3 convs, whose
keys change).

Stage k is ``layer{k}`` (the paper's conv{k+1}_x / res{k+1}).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .base import BACKBONES, AttentionBackbone, backbone_variant, pair, register_backbone
from .blocks import BasicBlock, Bottleneck, ZeroPadShortcut, conv1x1, conv3x3
from .resnet_places import find_stages, insert

__all__ = ["ResNet", "CifarResNet", "create", "list_backbones", "stn_kwargs_for", "transform_options"]

class ResNet(AttentionBackbone):
    r"""ImageNet ResNet / ResNeXt with torchvision's layout, and attention where its paper puts it.

    Args:
        block: :class:`~visattn.backbones.blocks.BasicBlock` or :class:`~visattn.backbones.blocks.Bottleneck`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-50.
        num_classes: classifier outputs; 0 gives ``fc = nn.Identity()`` (pooled features).
        in_chans: input channels.
        groups: 3x3 conv groups (ResNeXt cardinality).
        width_per_group: bottleneck width per group (64 for ResNet).
        zero_init_residual: zero the last BN of each block (torchvision's option).
        attention: registry key of the attention module (``visattn.list_modules()``), or ``None``.
        attention_kwargs: keyword arguments of the attention module.
        position: where plug-in modules go in a block: ``"standard"``, ``"pre"``, ``"post"``, ``"identity"``.
        stages: stages (1..4) that get the module; default: the paper's placement (see
            :mod:`visattn.backbones.attach`).
        blocks: ``{stage: [block indices]}`` for single blocks (e.g. non-local blocks).
        input_size: input ``(H, W)`` the network is built for; only size-bound modules (PSA, RGA) use it.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, num\_classes)`

    Example:
        >>> m = ResNet(Bottleneck, [3, 4, 6, 3], attention="se")
        >>> sum(p.numel() for p in m.parameters())
        28088024
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], *, num_classes: int = 1000,
                 in_chans: int = 3, groups: int = 1, width_per_group: int = 64, zero_init_residual: bool = False,
                 attention: str | None = None, attention_kwargs: Mapping[str, Any] | None = None,
                 position: str = "standard", stages: Iterable[int] | None = None,
                 blocks: Mapping[int, Iterable[int]] | None = None, input_size: int | Iterable[int] = 224):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 stage depths, got {layers}")
        self.num_stages, self.stem_strides = 4, (2, 2)  # conv1, maxpool
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)
        self._insert_attention(attention, attention_kwargs, position, stages, blocks, input_size, in_chans)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int,
                    stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                         dilation=self.dilation) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before global pooling: ``(B, C_in, H, W) -> (B, num_features, H/32, W/32)``."""
        if self.transform is not None:
            x = self.transform(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class CifarResNet(AttentionBackbone):
    r"""He et al.'s CIFAR ResNet (Sec. 4.2): a 3x3 stem and 3 stages of 16 / 32 / 64 channels, 2n blocks each.

    Depth 6n + 2 (20, 32, 44, 56, 110). The shortcut where the shape changes is option A of the paper
    by default (``shortcut="A"``: parameter-free, stride-2 sub-sampling and zero-padded channels, as the
    paper uses on CIFAR: ResNet-20 has 0.27M parameters), or option B (``"B"``: 1x1 conv + BN projection).
    Module names follow torchvision's (``conv1, bn1, relu, layer1..3, avgpool, fc``).

    Args:
        depth: 6n + 2.
        num_classes: classifier outputs (0: ``fc = nn.Identity()``).
        in_chans: input channels (1 for Fashion-MNIST).
        widths: channels of the three stages.
        shortcut: ``"A"`` (zero padding, the paper's CIFAR choice) or ``"B"`` (projection).
        zero_init_residual: zero the last BN of each block.
        attention: registry key, or ``None``.
        attention_kwargs: keyword arguments of the attention module.
        position: plug-in position in a block (see :class:`ResNet`).
        stages: stages (1..3) that get the module.
        blocks: ``{stage: [block indices]}``.
        input_size: input ``(H, W)`` (32 for CIFAR, 28 for Fashion-MNIST); only size-bound modules use it.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, num\_classes)`

    Example:
        >>> m = CifarResNet(20)
        >>> sum(p.numel() for p in m.parameters())
        269722
        >>> CifarResNet(20, in_chans=1)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, *, num_classes: int = 10, in_chans: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64), shortcut: str = "A", zero_init_residual: bool = False,
                 attention: str | None = None, attention_kwargs: Mapping[str, Any] | None = None,
                 position: str = "standard", stages: Iterable[int] | None = None,
                 blocks: Mapping[int, Iterable[int]] | None = None, input_size: int | Iterable[int] = 32):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet: depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' (zero padding) or 'B' (projection), got {shortcut!r}")
        n = (depth - 2) // 6
        self.depth, self.shortcut = depth, shortcut
        self.num_stages, self.stem_strides = 3, ()
        self.inplanes = widths[0]
        self.conv1 = conv3x3(in_chans, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(widths[0], n, 1)
        self.layer2 = self._make_layer(widths[1], n, 2)
        self.layer3 = self._make_layer(widths[2], n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = widths[2]
        self.fc = nn.Linear(widths[2], num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)
        self._insert_attention(attention, attention_kwargs, position, stages, blocks, input_size, in_chans)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            if self.shortcut == "A":
                downsample = ZeroPadShortcut(self.inplanes, planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before global pooling: ``(B, C_in, H, W) -> (B, widths[2], H/4, W/4)``."""
        if self.transform is not None:
            x = self.transform(x)
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


# --------------------------------------------------------------------------------------------- catalogue
# One builder per name, registered with @register_backbone; other files add their own (plain.py).

for _name, _doc, _fixed in (
    ("resnet18", "ResNet-18, ImageNet layout (He et al., CVPR 2016).", dict(block=BasicBlock, layers=[2, 2, 2, 2])),
    ("resnet34", "ResNet-34, ImageNet layout (He et al., CVPR 2016).", dict(block=BasicBlock, layers=[3, 4, 6, 3])),
    ("resnet50", "ResNet-50, ImageNet layout (He et al., CVPR 2016).", dict(block=Bottleneck, layers=[3, 4, 6, 3])),
    ("resnet101", "ResNet-101, ImageNet layout (He et al., CVPR 2016).",
     dict(block=Bottleneck, layers=[3, 4, 23, 3])),
    ("resnet152", "ResNet-152, ImageNet layout (He et al., CVPR 2016).",
     dict(block=Bottleneck, layers=[3, 8, 36, 3])),
    ("resnext50_32x4d", "ResNeXt-50 32x4d, ImageNet layout (Xie et al., CVPR 2017).",
     dict(block=Bottleneck, layers=[3, 4, 6, 3], groups=32, width_per_group=4)),
):
    register_backbone(_name, family="resnet")(backbone_variant(ResNet, _name, _doc, **_fixed))

for _depth in (20, 32, 44, 56, 110):
    register_backbone(f"resnet{_depth}", family="cifar-resnet")(backbone_variant(
        CifarResNet, f"resnet{_depth}", f"ResNet-{_depth}, CIFAR layout (He et al., CVPR 2016, Sec. 4.2).",
        depth=_depth))


def list_backbones(pattern: str | None = None) -> list[str]:
    """Names of the backbones :func:`create` builds, optionally filtered by an fnmatch ``pattern``.

    Example:
        >>> list_backbones("resnet5*")
        ['resnet50', 'resnet56']
    """
    return BACKBONES.keys(pattern or None)


def stn_kwargs_for(input_size: int | Iterable[int]) -> dict[str, Any]:
    """The Spatial Transformer's localisation net sized for a network input of ``input_size``.

    The STN paper sizes the localisation net per task, with 20-filter convs (its Appendix A): on 28x28
    digits its convs see the whole image, on 60x60 cluttered digits they follow max-pools. Here the input
    is max-pooled before each of the two 20-channel localisation convs by ``size // 20`` (1 below 40
    pixels, 3 at 60), so the localisation net costs little next to a small CNN whatever the input size.

    Example:
        >>> stn_kwargs_for(60)
        {'loc_channels': 20, 'loc_pool': 3}
    """
    h, w = pair(input_size)
    return {"loc_channels": 20, "loc_pool": max(1, min(h, w) // 20)}


def transform_options(transform: str, input_size: int | Iterable[int],
                      transform_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of input transform ``transform`` at a network input of ``input_size``.

    For ``"stn"``: :func:`stn_kwargs_for`'s sizing of the default localisation net, or, with
    ``loc_net="paper"``, the ``input_size`` the paper's net is built for; ``transform_kwargs`` override them.

    Example:
        >>> transform_options("stn", 60, {"output_size": 30})
        {'loc_channels': 20, 'loc_pool': 3, 'output_size': 30}
        >>> transform_options("stn", 60, {"loc_net": "paper"})
        {'input_size': (60, 60), 'loc_net': 'paper'}
    """
    options = dict(transform_kwargs or {})
    sizing: dict[str, Any] = {}
    if transform == "stn" and options.get("loc_net", "conv") == "paper":
        sizing = {"input_size": pair(input_size)}  # the paper's localisation net is built for the input size
    elif transform == "stn":
        sizing = stn_kwargs_for(input_size)
    return {**sizing, **options}


def _split_module_kwargs(builder: Callable[..., nn.Module], name: str, attention: str | None,
                         kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into the network's own arguments and the attention module's (as ``attach`` takes them)."""
    accepted = inspect.signature(builder).parameters
    network = {k: v for k, v in kwargs.items() if k in accepted}
    module = {k: v for k, v in kwargs.items() if k not in accepted}
    if module and attention is None:
        raise TypeError(f"create({name!r}) got unexpected keyword argument(s) {', '.join(sorted(module))} (module "
                        "keyword arguments need an attention key)")
    return network, module


def create(name: str, attention: str | None = None, attention_kwargs: Mapping[str, Any] | None = None,
           position: str = "standard", stages: Iterable[int] | None = None, *, num_classes: int | None = None,
           in_chans: int | None = None, transform: str | None = None,
           transform_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` (``list_backbones()``) with attention module ``attention`` where its paper puts it.

    Args:
        name: ``resnet18/34/50/101/152``, ``resnext50_32x4d`` (ImageNet layout, 1000 classes by default) or
            ``resnet20/32/44/56/110`` (CIFAR layout, 10 classes by default).
        attention: registry key (``visattn.list_modules()``) or ``None``.
        attention_kwargs: the attention module's keyword arguments.
        position: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` for plug-in modules.
        stages: stage numbers (1 = ``layer1``) that get the module; default: the paper's placement.
        num_classes: classifier outputs (default 1000 ImageNet / 10 CIFAR).
        in_chans: input channels (default 3).
        transform: a transform-role registry key (``"stn"``) put before the network, on its input: with
            ``"stn"`` the model is the STN paper's ST-CNN, its localisation net sized for ``input_size``
            (:func:`stn_kwargs_for`). Combines with ``attention``.
        transform_kwargs: the transform's keyword arguments (override the sizing). With ``output_size`` the
            network after the transform is built for that size (``input_size`` stays the transform's);
            ``loc_net="paper"`` gets ``input_size`` instead of :func:`stn_kwargs_for`'s sizing.
        **kwargs: further arguments of :class:`ResNet` / :class:`CifarResNet` (``blocks``, ``input_size``,
            ``zero_init_residual``, ``shortcut``, ...); any other keyword goes to the attention module, as
            :func:`~visattn.backbones.attach.attach` takes it (``create("resnet20", "se", reduction=8)``).

    Raises:
        KeyError: unknown ``name`` (the closest names are suggested).
        TypeError: a keyword argument neither the network nor the attention module takes.

    Example:
        >>> m = create("resnet20", "se", {"reduction": 4}, in_chans=1)
        >>> m(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    builder = BACKBONES.get(name).builder
    kwargs, module_kwargs = _split_module_kwargs(builder, name, attention, kwargs)
    if module_kwargs:
        twice = sorted(set(module_kwargs) & set(attention_kwargs or {}))
        if twice:
            raise TypeError(f"create({name!r}): {', '.join(twice)} given both as keyword and in attention_kwargs")
        attention_kwargs = {**dict(attention_kwargs or {}), **module_kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    transform_args = dict(transform_kwargs or {})
    transform_input = kwargs.get("input_size")
    if transform is not None and transform_args.get("output_size") is not None:
        # the network after the transform sees the sampled grid (the STN paper's downsampling ST-CNN)
        kwargs["input_size"] = pair(transform_args["output_size"])
    model = builder(attention=attention, attention_kwargs=attention_kwargs, position=position, stages=stages,
                    **kwargs)
    if transform is not None:
        from ..registry import info

        if info(transform).role != "transform":
            raise ValueError(f"create: transform must be a transform-role module (e.g. 'stn'), got {transform!r} "
                             f"({info(transform).role}); pass it as attention instead")
        input_size = pair(transform_input if transform_input is not None else
                           224 if isinstance(model, ResNet) else 32)
        options = transform_options(transform, input_size, transform_args)
        insert(model, find_stages(model), transform, input_size=input_size, in_chans=kwargs.get("in_chans", 3),
               kwargs=options)
    elif transform_kwargs:
        raise ValueError("create: transform_kwargs need a transform")
    return model
