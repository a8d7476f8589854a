"""Honest subsets: a seeded, class-stratified random sample instead of "the first N files".

A folder listed class by class puts every image of class 0 first, so its first N files are often a single
class, and a run trained and validated on them reports 100% accuracy. :func:`stratified_subset` keeps each
class's share of the whole set (largest remainder rounding, at least one sample per class while the limit
allows) and draws the samples of each class at random from ``seed``: the same call always picks the same
samples, whatever order the files were listed in.

Example:
    >>> import torch
    >>> labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)   # sorted by class, as a folder listing is
    >>> pick = stratified_subset(labels, 4, seed=0)
    >>> sorted(labels[pick].tolist())
    [0, 0, 1, 2]
    >>> torch.equal(pick, stratified_subset(labels, 4, seed=0))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["stratified_subset", "random_subset", "class_quotas"]


def _as_labels(labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"stratified_subset: labels must be a 1-D integer sequence, got {tuple(labels.shape)} "
                         f"{labels.dtype}")
    return labels.long()


def _check_limit(limit: int, what: str) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{what}: limit must be a positive int, got {limit!r}")


def class_quotas(counts: torch.Tensor, limit: int) -> torch.Tensor:
    """How many samples of each class a subset of ``limit`` takes: proportional, whole numbers summing to ``limit``.

    Each class gets ``floor(limit * n_c / N)``; the samples left over go to the classes with the largest
    remainders (ties to the lower class index). While ``limit`` is at least the number of non-empty classes,
    no non-empty class gets zero: a class that rounded to zero takes one sample from the class with the
    largest quota.

    Args:
        counts: samples per class, ``(K,)`` int.
        limit: subset size, ``1 <= limit <= counts.sum()``.

    Returns:
        ``(K,)`` int64 quotas, each at most its class's count.
    """
    counts = counts.long()
    total = int(counts.sum())
    exact = counts.double() * limit / total
    quota = exact.floor().long()
    left = limit - int(quota.sum())
    remainder = exact - quota.double()
    # stable sort: equal remainders keep class order, so the result does not depend on sort internals
    order = torch.sort(-remainder, stable=True).indices
    quota[order[:left]] += 1
    nonempty = counts > 0
    if limit >= int(nonempty.sum()):
        for c in torch.nonzero(nonempty & (quota == 0)).flatten().tolist():
            donor = int(torch.argmax(quota))
            quota[donor] -= 1
            quota[c] += 1
    return quota


def stratified_subset(labels: torch.Tensor | Sequence[int], limit: int | None, seed: int = 0) -> torch.Tensor:
    r"""Indices of a deterministic, class-stratified random subset of ``limit`` samples (in ascending order).

    Args:
        labels: the class of each sample, ``(N,)`` integers.
        limit: subset size; ``None`` or ``limit >= N`` gives every index.
        seed: picks which samples of each class (the same seed, labels and limit give the same indices).

    Returns:
        int64 indices ``(min(limit, N),)``, ascending.

    Raises:
        ValueError: labels that are not a 1-D integer sequence, a limit that is not a positive int.

    Shape:
        - labels: :math:`(N,)`
        - Output: :math:`(\min(limit, N),)`
    """
    labels = _as_labels(labels)
    n = len(labels)
    if limit is None or limit >= n:
        return torch.arange(n)
    _check_limit(limit, "stratified_subset")
    classes, inverse = torch.unique(labels, return_inverse=True)
    quotas = class_quotas(torch.bincount(inverse, minlength=len(classes)), limit)
    g = torch.Generator().manual_seed(int(seed))
    picked = []
    for c in range(len(classes)):
        members = torch.nonzero(inverse == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[: int(quotas[c])]])
    return torch.cat(picked).sort().values


def random_subset(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a deterministic random subset of ``limit`` of ``n`` samples (ascending), for data without labels.

    Segmentation samples have a mask, not one label, so they cannot be stratified by class; they are drawn
    at random from ``seed`` instead of taking the first ``limit``.

    Example:
        >>> random_subset(10, 3, seed=1).tolist() == random_subset(10, 3, seed=1).tolist()
        True
    """
    if limit is None or limit >= n:
        return torch.arange(n)
    _check_limit(limit, "random_subset")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)[:limit].sort().values
