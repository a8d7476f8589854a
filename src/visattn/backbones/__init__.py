"""ResNet backbones with attention slots, and :func:`attach` for torchvision / timm ResNets.

Example:
    >>> import torch
    >>> from visattn.backbones import create
    >>> m = create("resnet18", attention="se", num_classes=10)
    >>> m(torch.randn(1, 3, 64, 64)).shape
    torch.Size([1, 10])
"""

from .attach import attach
from .base import BACKBONES, AttentionBackbone, BackboneInfo, backbone_info, register_backbone
from .blocks import POSITIONS, BasicBlock, Bottleneck, ZeroPadShortcut
from .plain import PlainBlock, PlainCNN
from .resnet import CifarResNet, ResNet, create, list_backbones

__all__ = ["BACKBONES", "POSITIONS", "AttentionBackbone", "BackboneInfo", "BasicBlock", "Bottleneck", "CifarResNet",
           "PlainBlock", "PlainCNN", "ResNet", "ZeroPadShortcut", "attach", "backbone_info", "create",
           "list_backbones", "register_backbone"]
