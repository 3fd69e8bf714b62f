"""Tests of ``data_prep.splits``: stratified, seeded, group-aware splits."""

import numpy as np
import pytest

from convlstm_tl.errors import UserError
from data_prep.splits import check_ratios, split_indices

SPLITS = ("train", "val", "test")


def _assert_partition(parts, n):
    joined = np.concatenate([parts[s] for s in SPLITS])
    assert sorted(joined.tolist()) == list(range(n))


def test_stratified_exact_counts_per_class():
    labels = np.repeat([0, 1, 2], [100, 40, 20])
    parts = split_indices(labels, val=0.15, test=0.15, seed=0)
    _assert_partition(parts, len(labels))
    counts = {s: np.bincount(labels[parts[s]], minlength=3).tolist() for s in SPLITS}
    assert counts == {"train": [70, 28, 14], "val": [15, 6, 3], "test": [15, 6, 3]}


def test_seeded():
    labels = np.arange(60) % 3
    first, again, other = (split_indices(labels, seed=s) for s in (1, 1, 2))
    for s in SPLITS:
        np.testing.assert_array_equal(first[s], again[s])
    assert any(not np.array_equal(first[s], other[s]) for s in SPLITS)


def test_every_class_in_every_split_even_when_tiny():
    labels = np.repeat([0, 1], [3, 50])
    parts = split_indices(labels, val=0.1, test=0.1)
    for s in SPLITS:
        assert set(labels[parts[s]].tolist()) == {0, 1}


def test_groups_never_in_two_splits_and_classes_spread():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(3, 9, size=40))
    labels = (np.unique(groups, return_inverse=True)[1] % 4).astype(np.int64)  # one class per group
    parts = split_indices(labels, groups, seed=3)
    _assert_partition(parts, len(labels))
    seen = [set(groups[parts[s]].tolist()) for s in SPLITS]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for s in SPLITS:
        assert set(labels[parts[s]].tolist()) == {0, 1, 2, 3}
    assert 0.6 < len(parts["train"]) / len(labels) < 0.8


def test_mixed_class_groups_such_as_subjects():
    labels = np.tile(np.arange(3), 60)  # every subject does every class
    groups = np.repeat(np.array([f"s{i}" for i in range(6)]), 30)
    parts = split_indices(labels, groups)
    seen = [set(groups[parts[s]].tolist()) for s in SPLITS]
    assert all(seen) and not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


@pytest.mark.parametrize("labels, groups, message", [
    (np.repeat([0, 1], [2, 10]), None, "class '0' has 2 sample"),
    (np.repeat([0, 1], 6), np.repeat([0, 1, 2, 3], 3), "occurs in 2 group"),
])
def test_too_few_to_split(labels, groups, message):
    with pytest.raises(UserError, match=message):
        split_indices(labels, groups)


@pytest.mark.parametrize("val, test", [(0, 0.1), (0.1, 0), (1.2, 0.1), (0.5, 0.5), (-0.1, 0.2), (True, 0.1)])
def test_ratios_out_of_range(val, test):
    with pytest.raises(UserError, match="Received"):
        check_ratios(val, test)
