"""Tests of ``data_prep.splits``: stratified, seeded, group-aware splits."""

import numpy as np
import pytest

from convlstm_tl.errors import UserError
from data_prep.splits import carve_val, check_given_groups, check_ratios, complete_given_splits, split_indices

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


def test_carve_val_keeps_groups_whole_and_every_class_in_both():
    groups = np.repeat(np.arange(24), 5)
    labels = (groups % 3).astype(np.int64)  # 8 one-class groups per class
    parts = carve_val(labels, groups, fraction=0.25, seed=4)
    assert sorted(np.concatenate([parts["train"], parts["val"]]).tolist()) == list(range(len(labels)))
    assert not set(groups[parts["train"]].tolist()) & set(groups[parts["val"]].tolist())
    for name in ("train", "val"):
        assert set(labels[parts[name]].tolist()) == {0, 1, 2}
    assert len(parts["val"]) == 30


def test_carve_val_is_seeded_and_stratified_without_groups():
    labels = np.repeat([0, 1, 2], [40, 20, 1])
    first, again = (carve_val(labels, fraction=0.25, seed=7) for _ in range(2))
    for name in ("train", "val"):
        np.testing.assert_array_equal(first[name], again[name])
    assert np.bincount(labels[first["val"]], minlength=3).tolist() == [10, 5, 0]
    # A class of one sample cannot be shared: it stays in train, which needs every class.
    assert 2 in labels[first["train"]]
    other = carve_val(labels, fraction=0.25, seed=8)
    assert not np.array_equal(first["val"], other["val"])


@pytest.mark.parametrize("labels, groups, fraction, message", [
    (np.array([0, 1, 2]), None, 0.5, "leaves val empty"),
    (np.repeat([0, 1], 4), np.repeat([0, 1], 4), 0.3, "no class has two groups"),
    (np.repeat([0, 1], 4), None, 1.0, "must be a fraction"),
])
def test_carve_val_refuses_what_it_cannot_do(labels, groups, fraction, message):
    with pytest.raises(UserError, match=message):
        carve_val(labels, groups, fraction=fraction)


def test_a_group_in_two_given_splits_is_named():
    groups = np.array(["a", "b", "c", "b"])
    with pytest.raises(UserError, match="group 'b' is in both the given train and test splits") as error:
        check_given_groups(groups, {"train": [0, 1], "val": [2], "test": [3]})
    assert "one split only" in str(error.value)
    with pytest.raises(UserError, match=r"sentence S1 is in both the given train and val splits \(row 1 and row 2\)"):
        check_given_groups(np.array([0, 1, 1]), {"train": [0, 1], "val": [2], "test": []}, what="sentence",
                           show=lambda i: f"S{i}", locate=lambda i: f"row {i}")
    check_given_groups(groups[:3], {"train": [0], "val": [1], "test": [2]})


def test_complete_given_splits_needs_val_or_val_from_train():
    labels = np.tile([0, 1], 10)
    given = {"train": np.arange(16), "test": np.arange(16, 20)}
    with pytest.raises(UserError, match="no x_val; pass --val-from-train F"):
        complete_given_splits(given, labels, no_val="the file has no x_val")
    parts, carved = complete_given_splits(given, labels, val_from_train=0.25, seed=3)
    assert carved == {"fraction": 0.25, "seed": 3}
    assert len(parts["val"]) == 4 and set(parts["val"]) < set(range(16))
    np.testing.assert_array_equal(parts["test"], np.arange(16, 20))
    with pytest.raises(UserError, match="drop --val-from-train"):
        complete_given_splits(parts, labels, val_from_train=0.25)
