"""Tests of ``convlstm_tl.data.sequence.DomainSequence``: batching, shuffling, streaming."""

import pickle

import h5py
import numpy as np
import pytest

from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.data.writer import write_domain

N_TRAIN = 48


@pytest.fixture
def indexed_path(tmp_path):
    """A domain whose sample ``i`` is filled with the value ``i``: a batch shows which samples it holds."""
    splits = {}
    for name, n in (("train", N_TRAIN), ("val", 12), ("test", 12)):
        x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None, None], (n, 2, 1, 3, 1)).copy()
        splits[name] = SplitArrays(x=x, y=np.arange(n) % 3)
    path = tmp_path / "Indexed.h5"
    write_domain(path, splits, domain="Indexed", class_names=("a", "b", "c"), provenance="test")
    return path


def _ids(x):
    """Sample ids of a batch of the indexed domain (every value of sample i is i)."""
    ids = x.reshape(len(x), -1)
    assert (ids == ids[:, :1]).all()
    return ids[:, 0].astype(int)


def _epoch(sequence):
    """Sample ids and labels of one pass over ``sequence``, in batch order."""
    ids, labels = [], []
    for i in range(len(sequence)):
        x, y = sequence[i]
        ids.extend(_ids(x))
        labels.extend(y)
    return np.array(ids), np.array(labels)


@pytest.mark.parametrize("batch_size, sizes", [(10, [10, 10, 10, 10, 8]), (16, [16, 16, 16]), (100, [48])])
def test_batches_cover_every_sample_once(indexed_path, batch_size, sizes):
    sequence = DomainSequence(indexed_path, "train", batch_size=batch_size, shuffle=True, seed=3)
    assert len(sequence) == len(sizes)
    assert [len(sequence[i][1]) for i in range(len(sequence))] == sizes
    for _ in range(3):
        ids, _ = _epoch(sequence)
        assert sorted(ids) == list(range(N_TRAIN))
        sequence.on_epoch_end()


def test_batch_shapes_and_dtypes(indexed_path):
    x, y = DomainSequence(indexed_path, "val", batch_size=5)[0]
    assert x.shape == (5, 2, 1, 3, 1)
    assert x.dtype == np.float32
    assert y.shape == (5,)
    assert y.dtype == np.int64


def test_unshuffled_order_is_file_order(indexed_path):
    sequence = DomainSequence(indexed_path, "train", batch_size=7)
    ids, labels = _epoch(sequence)
    np.testing.assert_array_equal(ids, np.arange(N_TRAIN))
    np.testing.assert_array_equal(labels, np.arange(N_TRAIN) % 3)
    np.testing.assert_array_equal(sequence.labels, np.arange(N_TRAIN) % 3)
    sequence.on_epoch_end()
    np.testing.assert_array_equal(_epoch(sequence)[0], np.arange(N_TRAIN))


def test_shuffle_is_reproducible_from_the_seed(indexed_path):
    first = DomainSequence(indexed_path, "train", batch_size=8, shuffle=True, seed=7)
    second = DomainSequence(indexed_path, "train", batch_size=8, shuffle=True, seed=7)
    other = DomainSequence(indexed_path, "train", batch_size=8, shuffle=True, seed=8)
    order = _epoch(first)[0]
    assert not np.array_equal(order, np.arange(N_TRAIN))
    np.testing.assert_array_equal(order, _epoch(second)[0])
    assert not np.array_equal(order, _epoch(other)[0])


def test_shuffle_changes_between_epochs_and_set_epoch_repeats_it(indexed_path):
    sequence = DomainSequence(indexed_path, "train", batch_size=8, shuffle=True, seed=7)
    orders = []
    for _ in range(3):
        orders.append(_epoch(sequence)[0])
        sequence.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    # A fresh sequence put at epoch 2 (as on resume) gives epoch 2's order.
    resumed = DomainSequence(indexed_path, "train", batch_size=8, shuffle=True, seed=7)
    resumed.set_epoch(2)
    np.testing.assert_array_equal(_epoch(resumed)[0], orders[2])


def test_pairs_stay_matched_after_shuffle(indexed_path):
    sequence = DomainSequence(indexed_path, "train", batch_size=5, shuffle=True, seed=1)
    for _ in range(2):
        ids, labels = _epoch(sequence)
        np.testing.assert_array_equal(labels, ids % 3)
        np.testing.assert_array_equal(sequence.labels, ids % 3)
        sequence.on_epoch_end()


def test_indices_subset_is_respected(indexed_path):
    subset = [40, 3, 17, 4, 29]
    plain = DomainSequence(indexed_path, "train", batch_size=2, indices=subset)
    assert len(plain) == 3
    np.testing.assert_array_equal(_epoch(plain)[0], subset)
    shuffled = DomainSequence(indexed_path, "train", batch_size=2, indices=subset, shuffle=True, seed=0)
    ids, labels = _epoch(shuffled)
    assert sorted(ids) == sorted(subset)
    np.testing.assert_array_equal(labels, ids % 3)


def test_repeated_indices_are_read_in_the_given_order(indexed_path):
    # Oversampling repeats ids; h5py cannot read a repeated point selection directly.
    sequence = DomainSequence(indexed_path, "train", batch_size=4, indices=[9, 2, 9, 2, 0])
    x, y = sequence[0]
    np.testing.assert_array_equal(_ids(x), [9, 2, 9, 2])
    np.testing.assert_array_equal(y, [0, 2, 0, 2])


def test_without_labels_yields_x_only(indexed_path):
    batch = DomainSequence(indexed_path, "test", batch_size=4, with_labels=False)[1]
    assert isinstance(batch, np.ndarray)
    np.testing.assert_array_equal(_ids(batch), [4, 5, 6, 7])


def test_out_of_range_batch_and_bad_batch_size(indexed_path):
    sequence = DomainSequence(indexed_path, "val", batch_size=5)
    with pytest.raises(IndexError):
        sequence[len(sequence)]
    with pytest.raises(IndexError):
        sequence[-1]
    with pytest.raises(ValueError, match="batch_size"):
        DomainSequence(indexed_path, "val", batch_size=0)


def test_reads_only_the_batch(indexed_path, monkeypatch):
    """A batch reads batch_size samples of x from the file, never the whole split (labels are kept in memory)."""
    rows_read = []
    original_read, original_getitem = h5py.Dataset.read_direct, h5py.Dataset.__getitem__

    def spy_read(self, array, source_sel=None, dest_sel=None):
        rows_read.append((self.name, source_sel))
        return original_read(self, array, source_sel, dest_sel)

    def spy_getitem(self, key):
        rows_read.append((self.name, key))
        return original_getitem(self, key)

    sequence = DomainSequence(indexed_path, "train", batch_size=6, shuffle=True, seed=2)
    monkeypatch.setattr(h5py.Dataset, "read_direct", spy_read)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy_getitem)
    x, y = sequence[3]
    assert {name for name, _ in rows_read} == {"/train/x"}
    assert sum(sel.stop - sel.start for _, sel in rows_read) == 6
    assert x.shape[0] == 6 and y.shape == (6,)


def test_pickling_drops_the_file_handle(indexed_path):
    sequence = DomainSequence(indexed_path, "train", batch_size=4, shuffle=True, seed=5)
    first = sequence[0]
    assert sequence._file is not None  # opened by the read
    state = sequence.__getstate__()
    assert state["_file"] is None
    clone = pickle.loads(pickle.dumps(sequence))
    assert clone._file is None
    # The copy reopens the file and reads the same batch.
    again = clone[0]
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[1])
    # The original's handle is untouched by pickling.
    assert sequence._file is not None
    sequence.close()
    assert sequence._file is None
    np.testing.assert_array_equal(sequence[0][1], first[1])
    sequence.close()
    clone.close()


@pytest.mark.parametrize("rows", [[], [3], [0, 1, 2, 3], [1, 4, 5, 6, 9, 11], [0, 2, 4, 47]])
def test_read_rows_equals_a_point_selection(tiny_domain, rows):
    import h5py

    from convlstm_tl.data.sequence import read_rows

    with h5py.File(tiny_domain.path, "r") as f:
        x = f["train"]["x"]
        got = read_rows(x, rows)
        assert got.shape == (len(rows), *x.shape[1:]) and got.dtype == x.dtype
        np.testing.assert_array_equal(got, tiny_domain.splits["train"].x[rows])
