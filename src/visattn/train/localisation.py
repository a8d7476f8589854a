r"""How well a spatial transformer localises: its theta measured against where each item really is.

On cluttered Fashion-MNIST (:mod:`visattn.data.cluttered`) every image knows its item's centre, so a
transformer at the network input can be scored on whether its window finds the item:

- ``mean_abs_det``: mean :math:`|\det \theta_{:, :2}|`, the window's area as a fraction of the input's
  (1: the whole canvas; framing a 28 px item on a 60 px canvas needs about 0.2);
- ``theta_std``: the spread of theta over the images (the standard deviation of each of its six entries,
  averaged): 0 when the transformer does the same thing to every image;
- ``corr_x`` / ``corr_y``: Pearson correlation of the window centre :math:`(\theta_{13}, \theta_{23})` with the
  item's true centre, both in normalised coordinates :math:`[-1, 1]`; ``slope_x`` / ``slope_y`` the
  least-squares slope of the window centre on the item's (1 when the window follows the item one to one);
- ``centre_distance_px``: mean distance in pixels from the window centre to the item's centre, next to
  ``baseline_distance_px``, the mean distance of the items from their mean position: what one fixed window
  at the best place would get. A window that localises is closer than the baseline.

A correlation or slope is ``None`` where it is undefined (theta or the item positions do not vary).

Example:
    >>> import torch
    >>> centres = torch.tensor([[20.0, 30.0], [40.0, 30.0], [30.0, 10.0], [30.0, 50.0]])  # pixels, 60x60 canvas
    >>> theta = torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]).repeat(4, 1, 1)
    >>> theta[:, :, 2] = centres / 30 - 1  # each window centred on its item
    >>> m = localisation_measures(theta, centres, (60, 60))
    >>> [round(m[k], 3) for k in ("mean_abs_det", "corr_x", "slope_y", "centre_distance_px", "baseline_distance_px")]
    [0.25, 1.0, 1.0, 0.0, 15.0]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["localisation_measures", "input_transform", "measure_localisation", "LOCALISATION_KEYS"]

#: The measures :func:`localisation_measures` returns, in order.
LOCALISATION_KEYS = ("mean_abs_det", "theta_std", "corr_x", "corr_y", "slope_x", "slope_y", "centre_distance_px",
                     "baseline_distance_px")


def _corr_slope(a: torch.Tensor, b: torch.Tensor) -> tuple[float | None, float | None]:
    """Pearson correlation of ``a`` with ``b`` and the least-squares slope of ``a`` on ``b`` (None: undefined)."""
    da, db = a - a.mean(), b - b.mean()
    var_a, var_b = (da * da).mean(), (db * db).mean()
    scale = float(b.abs().max().clamp_min(1.0)) ** 2
    if float(var_b) <= 1e-12 * scale:
        return None, None
    cov = (da * db).mean()
    slope = float(cov / var_b)
    if float(var_a) <= 1e-24:
        return None, slope
    return float(cov / (var_a * var_b).sqrt()), slope


def localisation_measures(theta: torch.Tensor, centres: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
    """The localisation measures of affine transforms ``theta`` against true item centres (module docstring).

    Args:
        theta: the transformer's affine matrices, ``(N, 2, 3)``, mapping output to input coordinates
            (``F.affine_grid``'s convention, ``align_corners=False``).
        centres: each image's item centre ``(x, y)`` in pixels (pixel ``j`` covers ``[j, j + 1)``), ``(N, 2)``.
        size: the input's ``(H, W)`` in pixels.

    Returns:
        ``{name: value}`` for every name in :data:`LOCALISATION_KEYS` (floats; a correlation or slope is
        ``None`` where undefined).

    Raises:
        ValueError: shapes that do not fit, no images, or a size that is not two positive numbers.

    Shape:
        - theta: :math:`(N, 2, 3)`
        - centres: :math:`(N, 2)`
    """
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ValueError(f"localisation_measures: theta must be (N, 2, 3), got {tuple(theta.shape)}")
    if centres.dim() != 2 or centres.shape[1] != 2 or centres.shape[0] != theta.shape[0]:
        raise ValueError(f"localisation_measures: centres must be (N, 2) with N = {theta.shape[0]} as theta, got "
                         f"{tuple(centres.shape)}")
    if theta.shape[0] == 0:
        raise ValueError("localisation_measures: no images")
    h, w = size
    if h <= 0 or w <= 0:
        raise ValueError(f"localisation_measures: size must be two positive numbers (H, W), got {size!r}")
    theta, centres = theta.detach().double().cpu(), centres.detach().double().cpu()
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]  # [N]
    spread = theta.reshape(-1, 6).std(0, unbiased=False).mean() if theta.shape[0] > 1 else torch.zeros(())
    extent = torch.tensor([w, h], dtype=torch.float64)
    item = centres / extent * 2 - 1  # [N, 2] normalised, as theta's translation
    window = theta[:, :, 2]  # [N, 2]: where the output's centre (0, 0) reads the input
    corr_x, slope_x = _corr_slope(window[:, 0], item[:, 0])
    corr_y, slope_y = _corr_slope(window[:, 1], item[:, 1])
    window_px = (window + 1) / 2 * extent  # [N, 2]
    return {
        "mean_abs_det": float(det.abs().mean()),
        "theta_std": float(spread),
        "corr_x": corr_x, "corr_y": corr_y, "slope_x": slope_x, "slope_y": slope_y,
        "centre_distance_px": float((window_px - centres).norm(dim=1).mean()),
        "baseline_distance_px": float((centres - centres.mean(0)).norm(dim=1).mean()),
    }


def input_transform(model: nn.Module) -> nn.Module | None:
    """The transform a model applies to its input (visattn's ``model.transform``: the ST-CNN's), or ``None``."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    transform = getattr(model, "transform", None)
    return transform if isinstance(transform, nn.Module) and hasattr(transform, "attention_map") else None


@torch.no_grad()
def measure_localisation(model: nn.Module, data, *, batch_size: int = 256,
                         device: torch.device | str | None = None) -> dict[str, Any]:
    """Run ``model``'s input transformer over ``data`` and measure it against the items' true centres.

    Args:
        model: a network with a transform at its input (``create(..., transform="stn")``).
        data: an :class:`~visattn.data.loader.ImageData` of cluttered images (their ``images`` know each
            item's centre: ``item_centres()``), normalised as the model was trained.
        batch_size: images per forward pass of the localisation net.
        device: where to run it (default: where the model's parameters are).

    Returns:
        :func:`localisation_measures` of the transformer's theta on every image of ``data``.

    Raises:
        ValueError: the model has no input transform, or ``data`` does not know where its items are.
    """
    from ..data.loader import make_loader

    transform = input_transform(model)
    if transform is None:
        raise ValueError(f"measure_localisation: {type(model).__name__} has no input transform (model.transform); "
                         "build it with transform='stn'")
    centres_of = getattr(data.images, "item_centres", None)
    if centres_of is None:
        raise ValueError("measure_localisation: the data do not know where their items are; use the "
                         "cluttered-fashion-mnist data set")
    if device is None:
        device = next(transform.parameters()).device
    was_training = transform.training
    transform.eval()
    try:
        thetas = [transform.attention_map(x.to(device)).cpu() for x, _ in make_loader(data, batch_size)]
    finally:
        transform.train(was_training)
    return localisation_measures(torch.cat(thetas), centres_of(), tuple(data.images.shape[-2:]))
