"""Tests of the domain file modules ``convlstm_tl.data.format``, ``.writer``, ``.reader`` and ``.stats``."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, SPLIT_SIZES, make_splits, write_tiny
from convlstm_tl.data import format as format_module
from convlstm_tl.data import writer as writer_module
from convlstm_tl.data.format import (
    FORMAT_VERSION, SplitArrays, check_domain_name, domain_path, find_domain, open_domain, resolve_data_dir,
)
from convlstm_tl.data.reader import iter_x, read_labels, read_sampling_units, read_split
from convlstm_tl.data.stats import channel_stats, vocab_fingerprint
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import DomainFileError


def _write(path, splits, class_names=CLASS_NAMES, **kwargs):
    kwargs.setdefault("domain", "Tiny")
    kwargs.setdefault("provenance", "test")
    return write_domain(path, splits, class_names=class_names, **kwargs)


def _replace_dataset(f, name, data, **kwargs):
    del f[name]
    f.create_dataset(name, data=data, **kwargs)


# ---------------------------------------------------------------- round trip


def test_round_trip_arrays_attrs_and_dtypes(tiny_domain):
    info = open_domain(tiny_domain.path)
    assert info.path == tiny_domain.path
    assert info.domain == "Tiny"
    assert info.class_names == CLASS_NAMES
    assert info.n_classes == 3
    assert info.kind == "frames"
    assert info.frame_shape == FRAMES_1D
    assert info.split_sizes == SPLIT_SIZES
    assert info.has_groups
    assert info.provenance == "synthetic test data"
    assert info.x_dtype == "float32"
    for split, arrays in tiny_domain.splits.items():
        x, y = read_split(tiny_domain.path, split)
        np.testing.assert_array_equal(x, arrays.x)
        np.testing.assert_array_equal(y, arrays.y)
        assert x.dtype == np.float32
        assert y.dtype == np.int64
        labels, groups = read_labels(tiny_domain.path, split)
        np.testing.assert_array_equal(labels, arrays.y)
        np.testing.assert_array_equal(groups, arrays.group)
    with h5py.File(tiny_domain.path, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["class_names"]) == list(CLASS_NAMES)
        assert f.attrs["layout"] == "THWC"
        assert f.attrs["kind"] == "frames"
        for split in ("train", "val", "test"):
            assert f[split]["y"].dtype == np.int64
            assert f[split]["group"].dtype == np.int64
            # One sample per chunk, so training can stream a file larger than memory.
            assert f[split]["x"].chunks == (1, *FRAMES_1D)


def test_write_domain_returns_info_of_written_file(tmp_path):
    info = _write(tmp_path / "d.h5", make_splits())
    assert info.split_sizes == SPLIT_SIZES
    assert info.frame_shape == FRAMES_1D


def test_float16_is_kept_and_other_numbers_become_float32(tmp_path):
    splits = make_splits()
    for arrays in splits.values():
        arrays.x = arrays.x.astype(np.float16)
    assert open_domain(_write(tmp_path / "half.h5", splits).path).x_dtype == "float16"
    splits = make_splits()
    for arrays in splits.values():
        arrays.x = arrays.x.astype(np.float64)
    path = _write(tmp_path / "double.h5", splits).path
    assert open_domain(path).x_dtype == "float32"
    np.testing.assert_array_equal(read_split(path, "val")[0], splits["val"].x.astype(np.float32))


def test_string_groups_round_trip(tmp_path):
    splits = make_splits(string_groups=True)
    info = _write(tmp_path / "s.h5", splits)
    assert info.has_groups
    _, groups = read_labels(info.path, "train")
    assert list(groups) == [str(g) for g in splits["train"].group]


def test_domain_without_groups(tmp_path):
    splits = make_splits()
    for arrays in splits.values():
        arrays.group = None
    info = _write(tmp_path / "n.h5", splits)
    assert not info.has_groups
    assert read_labels(info.path, "test")[1] is None


def _with_recordings(splits, string_ids=False):
    """Add recording ids, finer than the groups: two recordings per group."""
    for arrays in splits.values():
        take = np.arange(len(arrays.y)) % 2
        if string_ids:
            arrays.recording = np.array([f"{g}-rec{t}" for g, t in zip(arrays.group, take)])
        else:
            arrays.recording = np.asarray(arrays.group) * 10 + take
    return splits


@pytest.mark.parametrize("string_ids", [False, True])
def test_recording_ids_round_trip_and_are_the_sampling_units(tmp_path, string_ids):
    splits = _with_recordings(make_splits(string_groups=string_ids), string_ids)
    path = _write(tmp_path / "r.h5", splits).path
    assert open_domain(path).has_groups
    for split, arrays in splits.items():
        units = read_sampling_units(path, split)
        np.testing.assert_array_equal(units, arrays.recording.astype(str) if string_ids else arrays.recording)
    with h5py.File(path, "r") as f:
        assert f["train/recording"].dtype == (np.dtype(object) if string_ids else np.int64)


def test_sampling_units_fall_back_to_groups_then_none(tmp_path):
    splits = make_splits()
    path = _write(tmp_path / "g.h5", splits).path
    np.testing.assert_array_equal(read_sampling_units(path, "val"), splits["val"].group)
    for arrays in splits.values():
        arrays.group = None
    assert read_sampling_units(_write(tmp_path / "n.h5", splits).path, "val") is None


def test_recording_ids_without_groups(tmp_path):
    splits = make_splits()
    for name, arrays in splits.items():
        arrays.recording = np.arange(len(arrays.y)) + 1000 * ("train", "val", "test").index(name)
        arrays.group = None
    info = _write(tmp_path / "r.h5", splits)
    assert not info.has_groups
    np.testing.assert_array_equal(read_sampling_units(info.path, "test"), splits["test"].recording)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["test"].recording.__setitem__(0, s["train"].recording[0]), "is in both 'train' and 'test'"),
    (lambda s: setattr(s["val"], "recording", None), "recording ids are in ['test', 'train'] only"),
    (lambda s: setattr(s["train"], "recording", s["train"].recording[:5]), "recording must have shape (48,)"),
])
def test_recording_ids_are_checked_like_groups(tmp_path, mutate, message):
    splits = _with_recordings(make_splits())
    mutate(splits)
    with pytest.raises(DomainFileError) as error:
        _write(tmp_path / "r.h5", splits)
    assert message in str(error.value)
    assert "recording" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_open_domain_checks_recording_ids_in_file(tmp_path):
    splits = _with_recordings(make_splits())
    path = _write(tmp_path / "r.h5", splits).path
    with h5py.File(path, "r+") as f:
        _replace_dataset(f, "val/recording", np.full(12, splits["train"].recording[3]))
    with pytest.raises(DomainFileError, match="recording .* is in both 'train' and 'val'"):
        open_domain(path)


def test_read_split_with_indices_returns_them_sorted(tiny_domain):
    x, y = read_split(tiny_domain.path, "train", indices=[7, 2, 5])
    np.testing.assert_array_equal(x, tiny_domain.splits["train"].x[[2, 5, 7]])
    np.testing.assert_array_equal(y, tiny_domain.splits["train"].y[[2, 5, 7]])


def test_iter_x_yields_chunks_in_order(tiny_domain):
    chunks = list(iter_x(tiny_domain.path, "train", batch_size=20))
    assert [len(c) for c in chunks] == [20, 20, 8]
    np.testing.assert_array_equal(np.concatenate(chunks), tiny_domain.splits["train"].x)
    chunks = list(iter_x(tiny_domain.path, "train", batch_size=2, indices=[9, 1, 4]))
    assert [len(c) for c in chunks] == [2, 1]
    np.testing.assert_array_equal(np.concatenate(chunks), tiny_domain.splits["train"].x[[1, 4, 9]])


def test_channel_stats_equal_numpy(tiny_domain, monkeypatch):
    # Small scan batches so the streamed sums cross several chunks.
    monkeypatch.setattr(format_module, "SCAN_BATCH", 5)
    x = tiny_domain.splits["train"].x.astype(np.float64)
    mean, variance = channel_stats(tiny_domain.path, "train")
    assert mean.shape == variance.shape == (2,)
    assert mean.dtype == variance.dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, x.var(axis=(0, 1, 2, 3)), rtol=1e-5, atol=1e-6)
    # Channel 0 carries the class signal, so its mean differs from channel 1's.
    assert abs(mean[0] - mean[1]) > 0.5


def test_channel_stats_of_subset(tiny_domain):
    indices = [0, 3, 4, 10]
    x = tiny_domain.splits["train"].x[indices].astype(np.float64)
    mean, variance = channel_stats(tiny_domain.path, "train", indices=indices)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, x.var(axis=(0, 1, 2, 3)), rtol=1e-5, atol=1e-6)


# ------------------------------------------------- write_domain refuses input


def _bad(mutate):
    splits = make_splits()
    mutate(splits)
    return splits


@pytest.mark.parametrize("mutate, message", [
    (lambda s: setattr(s["train"], "x", s["train"].x[:, 0]), "rank 5"),
    (lambda s: setattr(s["val"], "x", s["val"].x.astype(str)), "numeric"),
    (lambda s: setattr(s["train"], "y", s["train"].y - 1), "labels must lie in [0, 3)"),
    (lambda s: setattr(s["test"], "y", s["test"].y + 1), "labels must lie in [0, 3)"),
    (lambda s: setattr(s["val"], "y", s["val"].y.astype(np.float64)), "integer labels"),
    (lambda s: setattr(s["train"], "y", s["train"].y[:-1]), "y must have shape (48,)"),
    (lambda s: setattr(s["test"], "group", s["test"].group[:-1]), "group must have shape"),
    (lambda s: setattr(s["val"], "x", s["val"].x[:0]), "empty"),
    (lambda s: setattr(s["val"], "y", s["val"].y[:0]), "y must have shape (12,)"),
    (lambda s: s.pop("test"), "missing"),
    (lambda s: setattr(s["test"], "x", s["test"].x[:, :3]), "differ in frame shape"),
    (lambda s: s["train"].x.__setitem__((5, 0, 0, 0, 0), np.nan), "NaN or inf in x (first at sample 5)"),
    (lambda s: s["val"].x.__setitem__((3, 1, 0, 2, 1), np.inf), "NaN or inf in x (first at sample 3)"),
    (lambda s: s["test"].x.__setitem__((0, 0, 0, 0, 0), -np.inf), "NaN or inf"),
    (lambda s: setattr(s["val"], "group", None), "give them for every split or none"),
    (lambda s: s["test"].group.__setitem__(0, 2), "group"),
])
def test_write_domain_refuses_invalid_arrays_and_leaves_no_file(tmp_path, mutate, message):
    target = tmp_path / "out" / "Bad.h5"
    with pytest.raises(DomainFileError) as error:
        _write(target, _bad(mutate))
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    # Nothing written: no file, no temporary file (the folder may not even exist).
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


@pytest.mark.parametrize("class_names, message", [
    (("a", "a", "b"), "class_names has duplicates"),
    (("a", "", "b"), "class_names must be a non-empty JSON list of names"),
])
def test_write_domain_refuses_bad_class_names(tmp_path, class_names, message):
    with pytest.raises(DomainFileError, match=message):
        _write(tmp_path / "c.h5", make_splits(), class_names=class_names)
    assert list(tmp_path.iterdir()) == []


def test_write_domain_refuses_unknown_kind_and_tokens_without_vocab(tmp_path):
    with pytest.raises(DomainFileError, match="kind must be one of"):
        _write(tmp_path / "k.h5", make_splits(), kind="pixels")
    with pytest.raises(DomainFileError, match="vocab"):
        _write(tmp_path / "k.h5", make_splits(), kind="tokens")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "Tiny.h5"
    _write(path, make_splits(seed=1))
    before = path.read_bytes()

    # Invalid arrays: refused before anything is written.
    with pytest.raises(DomainFileError):
        _write(path, _bad(lambda s: setattr(s["train"], "y", s["train"].y + 5)))
    assert path.read_bytes() == before

    # A failure half way through writing: the temporary file goes, the old file stays.
    def fail(group, arrays, kind, **options):
        raise OSError("disk full")

    monkeypatch.setattr(writer_module, "_write_split", fail)
    with pytest.raises(OSError, match="disk full"):
        _write(path, make_splits(seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Tiny.h5"]


def test_group_leak_is_refused_with_int_ids(tmp_path):
    splits = make_splits()
    splits["test"].group[3] = 4  # 4 is a train recording
    with pytest.raises(DomainFileError) as error:
        _write(tmp_path / "leak.h5", splits)
    message = str(error.value)
    assert "'train'" in message and "'test'" in message
    assert "leaks" in message


def test_group_leak_is_refused_with_string_ids(tmp_path):
    splits = make_splits(string_groups=True)
    splits["val"].group[0] = "subject-1"
    with pytest.raises(DomainFileError) as error:
        _write(tmp_path / "leak.h5", splits)
    message = str(error.value)
    assert "subject-1" in message
    assert "'train'" in message and "'val'" in message


@pytest.mark.parametrize("string_groups, leaked, shown", [(False, 4, "group 4 "), (True, "subject-1", "group 'subject-1' ")])
def test_group_leak_message_shows_plain_id(tmp_path, string_groups, leaked, shown):
    splits = make_splits(string_groups=string_groups)
    splits["test"].group[0] = leaked
    with pytest.raises(DomainFileError) as error:
        _write(tmp_path / "leak.h5", splits)
    assert shown in str(error.value)


# --------------------------------------------------- open_domain on bad files


def _edited(tiny_domain, edit):
    with h5py.File(tiny_domain.path, "r+") as f:
        edit(f)
    return tiny_domain.path


def _wrong_dtype(dtype):
    def edit(f):
        _replace_dataset(f, "val/x", f["val/x"][()].astype(dtype))
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda f: _replace_dataset(f, "train/x", f["train/x"][()][:, 0]), "rank 5"),
    (_wrong_dtype(np.float64), "x must be float16 or float32. Received: dtype=float64"),
    (_wrong_dtype(np.int32), "x must be float16 or float32. Received: dtype=int32"),
    (lambda f: _replace_dataset(f, "test/y", f["test/y"][()] - 1), "labels must lie in [0, 3)"),
    (lambda f: _replace_dataset(f, "test/y", f["test/y"][()] + 1), "Received: min=1, max=3"),
    (lambda f: _replace_dataset(f, "val/y", f["val/y"][()][:-2]), "y must have shape (12,)"),
    (lambda f: _replace_dataset(f, "val/y", f["val/y"][()].astype(np.float32)), "integer labels"),
    (lambda f: _replace_dataset(f, "val/x", np.zeros((0, *FRAMES_1D), np.float32)), "empty"),
    (lambda f: f.__delitem__("test"), "has no 'test' split"),
    (lambda f: f.__delitem__("val/y"), "split 'val' has no 'y' dataset"),
    (lambda f: f.attrs.__delitem__("provenance"), "lacks the attributes ['provenance']"),
    (lambda f: f.attrs.__setitem__("format_version", 2), "format_version 2"),
    (lambda f: f.attrs.__setitem__("layout", "TCHW"), "layout 'TCHW'"),
    (lambda f: f.attrs.__setitem__("kind", "pixels"), "kind 'pixels'"),
    (lambda f: f.attrs.__setitem__("class_names", "walk, run, sit"), "class_names is not a JSON list"),
    (lambda f: f.attrs.__setitem__("class_names", '{"walk": 0}'), "class_names must be a non-empty JSON list"),
    (lambda f: f.attrs.__setitem__("class_names", '["walk", "run", "walk"]'), "class_names has duplicates"),
    (lambda f: f.__delitem__("val/group"), "group ids are in ['test', 'train'] only"),
    (lambda f: _replace_dataset(f, "test/group", np.full(12, 3)), "is in both 'train' and 'test'"),
    (lambda f: _replace_dataset(f, "test/x", f["test/x"][()][:, :, :, :4]), "differ in frame shape"),
])
def test_open_domain_reports_invalid_files(tiny_domain, edit, message):
    path = _edited(tiny_domain, edit)
    with pytest.raises(DomainFileError) as error:
        open_domain(path)
    text = str(error.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_open_domain_finds_non_finite_values_across_scan_chunks(tiny_domain, monkeypatch, value):
    monkeypatch.setattr(format_module, "SCAN_BATCH", 4)

    def edit(f):
        x = f["train/x"][()]
        x[10, 2, 0, 5, 1] = value
        x[13, 0, 0, 0, 0] = value
        _replace_dataset(f, "train/x", x, chunks=(1, *FRAMES_1D))

    path = _edited(tiny_domain, edit)
    with pytest.raises(DomainFileError, match=r"split 'train' has NaN or inf in x \(first at sample 10\)"):
        open_domain(path)
    # check_values=False skips the scan (for files validated already).
    assert open_domain(path, check_values=False).split_sizes == SPLIT_SIZES


def test_open_domain_finds_leak_of_string_ids_in_file(tmp_path):
    path = tmp_path / "s.h5"
    splits = make_splits(string_groups=True)
    _write(path, splits)
    with h5py.File(path, "r+") as f:
        ids = splits["test"].group.astype(object)
        ids[5] = "subject-2"
        _replace_dataset(f, "test/group", ids, dtype=h5py.string_dtype())
    with pytest.raises(DomainFileError, match="subject-2.*'train'.*'test'"):
        open_domain(path)


def test_open_domain_missing_file(tmp_path):
    with pytest.raises(DomainFileError, match="not found"):
        open_domain(tmp_path / "nothing.h5")


def test_truncated_file_is_a_domain_file_error(tiny_domain):
    data = tiny_domain.path.read_bytes()
    tiny_domain.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DomainFileError) as error:
        open_domain(tiny_domain.path)
    assert str(tiny_domain.path) in str(error.value)
    assert "data_prep" in str(error.value)


def test_random_bytes_are_a_domain_file_error(tmp_path):
    path = tmp_path / "noise.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DomainFileError, match="not a readable HDF5 file"):
        open_domain(path)


# ------------------------------------------------------------- data dir


def test_resolve_data_dir_prefers_argument_then_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLSTM_TL_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("rel") == Path("rel")
    assert resolve_data_dir() == tmp_path / "env"
    assert domain_path("St") == tmp_path / "env" / "St.h5"
    monkeypatch.delenv("CONVLSTM_TL_DATA")
    assert resolve_data_dir() == Path("data")
    assert domain_path("ms", tmp_path) == tmp_path / "ms.h5"


def test_find_domain(tiny_domain, monkeypatch):
    assert find_domain("Tiny", tiny_domain.data_dir) == tiny_domain.path
    monkeypatch.setenv("CONVLSTM_TL_DATA", str(tiny_domain.data_dir))
    assert find_domain("Tiny") == tiny_domain.path
    with pytest.raises(DomainFileError) as error:
        find_domain("St", tiny_domain.data_dir / "elsewhere")
    message = str(error.value)
    assert str(tiny_domain.data_dir / "elsewhere" / "St.h5") in message
    assert "data_prep" in message and "--data-dir" in message


# ------------------------------------------------------------- tokens


def _token_splits(high):
    rng = np.random.default_rng(0)
    return {
        name: SplitArrays(x=rng.integers(0, high, size=(n, 3, 1, 4, 1)), y=np.arange(n) % 2)
        for name, n in (("train", 6), ("val", 2), ("test", 2))
    }


def test_tokens_domain_round_trip(tmp_path):
    vocab = ["<pad>", "the", "cat", "sat", "down"]
    splits = _token_splits(len(vocab))
    info = _write(tmp_path / "tok.h5", splits, class_names=("a", "b"), kind="tokens", vocab=vocab)
    info = open_domain(info.path)
    assert info.kind == "tokens"
    assert info.vocab == tuple(vocab)
    assert info.x_dtype == "int32"
    np.testing.assert_array_equal(read_split(info.path, "train")[0], splits["train"].x)


def test_open_domain_refuses_token_ids_outside_vocab(tmp_path):
    path = _write(tmp_path / "tok.h5", _token_splits(5), class_names=("a", "b"), kind="tokens",
                  vocab=["a", "b", "c", "d", "e"]).path
    with h5py.File(path, "r+") as f:
        x = f["val/x"][()]
        x[1, 0, 0, 0, 0] = 5
        _replace_dataset(f, "val/x", x)
    with pytest.raises(DomainFileError, match="token ids outside the vocab of 5"):
        open_domain(path)


# ------------------------- write_domain must not write files open_domain rejects


def test_write_domain_refuses_token_ids_outside_vocab(tmp_path):
    with pytest.raises(DomainFileError, match="outside the vocab"):
        _write(tmp_path / "tok.h5", _token_splits(7), class_names=("a", "b"), kind="tokens",
               vocab=["a", "b", "c", "d", "e"])
    assert not (tmp_path / "tok.h5").exists()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_write_domain_refuses_values_that_overflow_float32(tmp_path):
    splits = make_splits()
    for arrays in splits.values():
        arrays.x = arrays.x.astype(np.float64)
    splits["train"].x[3, 0, 0, 0, 0] = 1e39
    with pytest.raises(DomainFileError):
        _write(tmp_path / "big.h5", splits)
    assert not (tmp_path / "big.h5").exists()


def test_compressed_file_reads_back_the_same(tmp_path):
    splits = make_splits()
    info = write_domain(tmp_path / "z.h5", splits, domain="z", class_names=CLASS_NAMES, provenance="test",
                        compression="gzip")
    with h5py.File(info.path) as f:
        assert f["train"]["x"].compression == "gzip" and f["train"]["x"].chunks[0] == 1
    np.testing.assert_array_equal(read_split(info.path, "val")[0], splits["val"].x)


def test_vocab_fingerprint_depends_on_tokens_and_order():
    assert vocab_fingerprint(["<pad>", "a", "b"]) == vocab_fingerprint(("<pad>", "a", "b"))
    assert vocab_fingerprint(["<pad>", "a", "b"]) != vocab_fingerprint(["<pad>", "b", "a"])


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "a\\b"])
def test_check_domain_name_refuses_paths(name):
    with pytest.raises(DomainFileError, match="plain name"):
        check_domain_name(name)


def test_written_file_has_the_usual_permissions(tmp_path):
    """mkstemp makes private files; a domain file should be readable like any other the user writes."""
    import os

    old = os.umask(0o022)
    try:
        tiny = write_tiny(tmp_path / "data")
    finally:
        os.umask(old)
    assert tiny.path.stat().st_mode & 0o777 == 0o644
