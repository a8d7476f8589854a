"""A small plain CNN (no shortcuts) with the same attention slots as visattn's ResNets.

The baselines of the attention papers on cluttered digits are small plain CNNs: the RAM paper's
"convolutional, 2 layer" network on 60x60 cluttered translated MNIST (Mnih et al., NeurIPS 2014,
arXiv:1406.6247, Table 2) and the Spatial Transformer paper's CNN baseline, which its ST-CNN puts a
spatial transformer in front of (Jaderberg et al., NeurIPS 2015, arXiv:1506.02025, Sec. 4.1). Ours is
a conv stem and three stages of two 3x3 conv + BN + ReLU layers (the first with stride 2), global
average pooling and a linear classifier: cheap enough to train on a CPU at 60x60.

Each stage is built of :class:`PlainBlock`, a :class:`~visattn.backbones.blocks.BasicBlock` without the
identity branch, so :func:`~visattn.backbones.attach.attach` and ``create(..., attention=...)`` find
its blocks and put a plug-in module at the same places as in a ResNet: after the last BN of the block
(``"standard"``), on its input (``"pre"``) or on its output (``"post"``); there is no ``"identity"``
position, as there is no shortcut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .base import AttentionBackbone, register_backbone
from .blocks import BasicBlock, conv3x3

__all__ = ["PlainBlock", "PlainCNN"]


class PlainBlock(BasicBlock):
    r"""Two 3x3 conv + BN layers and a ReLU, with no shortcut; the attention slot of a BasicBlock.

    ``conv1, bn1, relu, conv2, bn2`` as in :class:`~visattn.backbones.blocks.BasicBlock` (``downsample``
    is always ``None``): :math:`y = \mathrm{ReLU}(A(\mathrm{BN}(W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1 x)))))`
    with :math:`A` the attention module at the ``"standard"`` position.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of ``conv1``.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, planes, \lceil H / s \rceil, \lceil W / s \rceil)`

    Example:
        >>> PlainBlock(16, 32, 2)(torch.randn(1, 16, 9, 9)).shape
        torch.Size([1, 32, 5, 5])
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__(inplanes, planes, stride, downsample=None)

    def set_attention(self, module: nn.Module, position: str = "standard") -> None:
        if position == "identity":
            raise ValueError(f"{type(self).__name__}: a plain block has no identity (shortcut) branch; "
                             "position 'identity' does not apply (use 'standard', 'pre' or 'post')")
        super().set_attention(module, position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pre(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attn is None:
            return self.relu(out)
        if self.position == "standard":
            out = self.attn(out)
        out = torch.relu(out)  # not in place: the module's output may be saved for its backward
        return self.attn(out) if self.position == "post" else out


@register_backbone("plaincnn", family="plain")
class PlainCNN(AttentionBackbone):
    r"""Conv stem + 3 stages of :class:`PlainBlock` (first block of each stage with stride 2) + pool + linear.

    Args:
        widths: channels of the stem and the three stages.
        blocks_per_stage: plain blocks in each stage.
        num_classes: classifier outputs (0: ``fc = nn.Identity()``).
        in_chans: input channels.
        attention: registry key, or ``None``.
        attention_kwargs: keyword arguments of the attention module.
        position: plug-in position in a block: ``"standard"``, ``"pre"`` or ``"post"``.
        stages: stages (1..3) that get the module.
        blocks: ``{stage: [block indices]}``.
        input_size: input ``(H, W)``; size-bound modules and the classifier without global pooling use it.
        global_pool: average the last map before the classifier (default); ``False`` gives the classifier the
            whole flattened ``(widths[3], H/8, W/8)`` map, as the STN paper's and Lasagne's cluttered-MNIST
            classifiers read their last map, so it is built for ``input_size`` (an ST-CNN's: the transformer's
            ``output_size``).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`
        - Output: :math:`(B, num\_classes)`

    Example:
        >>> m = PlainCNN(in_chans=1)
        >>> sum(p.numel() for p in m.parameters())
        75002
        >>> m(torch.randn(2, 1, 60, 60)).shape
        torch.Size([2, 10])
    """

    def __init__(self, *, widths: tuple[int, int, int, int] = (16, 16, 32, 64), blocks_per_stage: int = 1,
                 num_classes: int = 10, in_chans: int = 3, zero_init_residual: bool = False,
                 attention: str | None = None, attention_kwargs: Mapping[str, Any] | None = None,
                 position: str = "standard", stages: Iterable[int] | None = None,
                 blocks: Mapping[int, Iterable[int]] | None = None, input_size: int | Iterable[int] = 60,
                 global_pool: bool = True):
        super().__init__()
        if zero_init_residual:
            raise ValueError("PlainCNN: zero_init_residual needs residual branches; a plain CNN has none")
        if len(widths) != 4 or min(widths) < 1 or blocks_per_stage < 1:
            raise ValueError(f"PlainCNN: widths must be 4 positive channel counts and blocks_per_stage >= 1, got "
                             f"{widths}, {blocks_per_stage}")
        self.num_stages, self.stem_strides = 3, ()
        self.conv1 = conv3x3(in_chans, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        for stage in range(1, 4):
            layers = [PlainBlock(widths[stage - 1], widths[stage], 2)]
            layers += [PlainBlock(widths[stage], widths[stage]) for _ in range(1, blocks_per_stage)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.global_pool = bool(global_pool)
        h, w = (input_size, input_size) if isinstance(input_size, int) else (int(v) for v in input_size)
        for _ in range(3):  # the three stride-2 stages (3x3 convs, padding 1)
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.final_size = (h, w)  # [H/8, W/8] of the last map
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)) if global_pool else nn.Identity()
        self.num_features = widths[3] * (1 if global_pool else h * w)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(False)
        self._insert_attention(attention, attention_kwargs, position, stages, blocks, input_size, in_chans)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before global pooling: ``(B, C_in, H, W) -> (B, widths[3], H/8, W/8)``."""
        if self.transform is not None:
            x = self.transform(x)
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling (or, with ``global_pool=False``, the whole map flattened) and the classifier."""
        if not self.global_pool and tuple(x.shape[-2:]) != self.final_size:
            raise ValueError(f"PlainCNN: built without global pooling for a {self.final_size[0]}x{self.final_size[1]} "
                             f"last map (input_size), got {x.shape[-2]}x{x.shape[-1]}: build it for this input size")
        return super().forward_head(x)
