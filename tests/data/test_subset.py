import pytest
import torch

from visattn.data.subset import class_quotas, random_subset, stratified_subset


def sorted_labels(counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_class_sorted_labels_give_every_class():
    labels = sorted_labels([20, 20, 20])  # a folder listing: class 0's files first
    pick = stratified_subset(labels, 9, seed=0)
    assert torch.bincount(labels[pick], minlength=3).tolist() == [3, 3, 3]


def test_proportional_quotas_sum_to_limit():
    counts = torch.tensor([50, 30, 20])
    assert class_quotas(counts, 10).tolist() == [5, 3, 2]
    assert int(class_quotas(counts, 7).sum()) == 7


def test_small_class_kept_while_the_limit_allows():
    labels = sorted_labels([97, 2, 1])
    pick = stratified_subset(labels, 3, seed=0)
    assert sorted(labels[pick].tolist()) == [0, 1, 2]


def test_deterministic_and_seeded():
    labels = sorted_labels([40, 40])
    a, b = stratified_subset(labels, 10, seed=3), stratified_subset(labels, 10, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, stratified_subset(labels, 10, seed=4))


def test_random_within_class_not_the_first_files():
    labels = sorted_labels([100, 100])
    pick = stratified_subset(labels, 10, seed=0)
    assert pick[pick < 100].tolist() != list(range(5))  # not the first 5 of class 0


def test_indices_unique_ascending_and_in_range():
    labels = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(0))
    pick = stratified_subset(labels, 123, seed=1)
    assert len(pick) == 123 == len(set(pick.tolist()))
    assert torch.equal(pick, pick.sort().values) and int(pick.max()) < 500


def test_none_or_large_limit_keeps_all():
    labels = sorted_labels([3, 3])
    assert stratified_subset(labels, None).tolist() == list(range(6))
    assert stratified_subset(labels, 100).tolist() == list(range(6))


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        stratified_subset(sorted_labels([5, 5]), limit)


def test_bad_labels():
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_subset(torch.rand(5), 2)


def test_random_subset_seeded_not_first():
    pick = random_subset(100, 10, seed=0)
    assert torch.equal(pick, random_subset(100, 10, seed=0))
    assert pick.tolist() != list(range(10))
