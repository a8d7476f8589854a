"""Image transforms at real resolution: RandomResizedCrop + flip for training, resize + centre crop for evaluation.

The practitioner's recipe, as timm and torchvision's reference scripts apply it to ImageNet:

- training: a random crop covering ``scale`` of the image's area at an aspect ratio in ``ratio``, resized
  to ``img_size`` x ``img_size``, flipped left-right with probability ``hflip``;
- evaluation: the shorter side resized to ``img_size / crop_pct`` (aspect ratio kept), then the centre
  ``img_size`` x ``img_size`` crop;
- both: to a float tensor in ``[0, 1]``, normalised by ``mean`` and ``std``.

With timm installed (the ``train`` extra) the transforms are timm's ``create_transform``; without it
torchvision's ``transforms.v2`` builds the same steps. Both take a PIL image and give a
``(C, img_size, img_size)`` float tensor.

Example:
    >>> from PIL import Image
    >>> t = image_transform(32, training=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> t(Image.new("RGB", (80, 40))).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["image_transform", "IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_CROP_PCT", "resize_size"]

#: ImageNet statistics: the normalisation of the published timm / torchvision weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the share of the resized image the evaluation crop keeps (timm's and torchvision's default 224 / 256).
DEFAULT_CROP_PCT = 0.875


def resize_size(img_size: int, crop_pct: float = DEFAULT_CROP_PCT) -> int:
    """Shorter side before the evaluation centre crop (timm's ``floor(img_size / crop_pct)``).

    Example:
        >>> resize_size(224)
        256
    """
    return int(img_size // crop_pct) if crop_pct < 1 else img_size


def _check(img_size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float,
           scale: tuple[float, float]) -> None:
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"image_transform: img_size must be a positive int, got {img_size!r}")
    if len(mean) != len(std) or not mean:
        raise ValueError(f"image_transform: mean and std need one value per channel, got {mean} and {std}")
    if min(std) <= 0:
        raise ValueError(f"image_transform: std must be positive, got {std}")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"image_transform: crop_pct must be in (0, 1], got {crop_pct}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"image_transform: scale must be 0 < low <= high <= 1, got {scale}")


def image_transform(img_size: int, *, training: bool, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, crop_pct: float = DEFAULT_CROP_PCT,
                    interpolation: str = "bilinear", scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                    use_timm: bool | None = None) -> Callable[[Any], Any]:
    r"""The transform from a PIL image to a normalised ``(C, img_size, img_size)`` tensor (see the module docstring).

    Args:
        img_size: side of the network input.
        training: RandomResizedCrop + flip (True) or resize + centre crop (False).
        mean: per-channel normalisation mean (one value per channel of the images it will see).
        std: per-channel normalisation std.
        crop_pct: evaluation: the centre crop's share of the resized image's shorter side.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        scale: training: the range of the crop's share of the image area (ImageNet's default).
        ratio: training: the range of the crop's aspect ratio.
        hflip: training: probability of a left-right flip.
        use_timm: force timm's ``create_transform`` (True) or torchvision's (False); default: timm if installed.

    Returns:
        A callable taking a PIL image and returning a float tensor.

    Raises:
        ValueError: a non-positive size, mismatched mean / std, crop_pct or scale out of range.

    Shape:
        - Output: :math:`(C, img\_size, img\_size)`
    """
    _check(img_size, mean, std, crop_pct, scale)
    if use_timm is None:
        try:
            import timm.data  # noqa: F401
            use_timm = True
        except ImportError:
            use_timm = False
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if use_timm:
        from timm.data import create_transform

        options: dict[str, Any] = {"scale": scale, "ratio": ratio, "hflip": hflip, "color_jitter": None} if training \
            else {"crop_pct": crop_pct, "crop_mode": "center"}
        return create_transform(img_size, is_training=training, interpolation=interpolation, mean=mean, std=std,
                                **options)
    return _torchvision_transform(img_size, training, mean, std, crop_pct, interpolation, scale, ratio, hflip)


def _torchvision_transform(img_size: int, training: bool, mean: tuple[float, ...], std: tuple[float, ...],
                           crop_pct: float, interpolation: str, scale: tuple[float, float],
                           ratio: tuple[float, float], hflip: float) -> Callable[[Any], Any]:
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    mode = InterpolationMode(interpolation)
    if training:
        steps = [T.RandomResizedCrop(img_size, scale=scale, ratio=ratio, interpolation=mode, antialias=True),
                 T.RandomHorizontalFlip(hflip)]
    else:
        steps = [T.Resize(resize_size(img_size, crop_pct), interpolation=mode, antialias=True),
                 T.CenterCrop(img_size)]
    return T.Compose([*steps, T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])
