"""Tests of ``convlstm_tl.data.writer.DomainWriter``: a domain file written chunk by chunk."""

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, make_splits
from convlstm_tl.data.format import SPLITS, open_domain
from convlstm_tl.data.reader import read_split
from convlstm_tl.data.writer import DomainWriter, write_domain
from convlstm_tl.errors import DomainFileError


def _writer(path, **kwargs):
    kwargs.setdefault("frame_shape", FRAMES_1D)
    return DomainWriter(path, domain="Tiny", class_names=CLASS_NAMES, provenance="test", **kwargs)


def _append_in_pieces(writer, splits, size):
    for name in SPLITS:
        arrays = splits[name]
        for start in range(0, len(arrays.y), size):
            piece = slice(start, start + size)
            writer.append(name, arrays.x[piece], arrays.y[piece], group=arrays.group[piece],
                          recording=None if arrays.recording is None else arrays.recording[piece])


def _contents(path):
    """Attributes and every dataset of a file, with dtypes and x's chunking."""
    out = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {key: f.attrs[key] for key in f.attrs}
        for name in SPLITS:
            for key, dataset in f[name].items():
                out[f"{name}/{key}"] = (dataset.dtype.kind, dataset[()].tolist())
            out[f"{name}/x chunks"] = f[name]["x"].chunks
    return out


@pytest.mark.parametrize("string_groups", [False, True])
def test_pieces_give_the_same_file_as_write_domain(tmp_path, string_groups):
    splits = make_splits(seed=3, string_groups=string_groups)
    for offset, name in enumerate(SPLITS):
        splits[name].recording = np.arange(len(splits[name].y)) + 100 * offset
    whole = write_domain(tmp_path / "whole.h5", splits, domain="Tiny", class_names=CLASS_NAMES, provenance="test")
    with _writer(tmp_path / "pieces.h5") as writer:
        _append_in_pieces(writer, splits, size=5)  # uneven: 48 = 9 * 5 + 3
    assert writer.info.split_sizes == whole.split_sizes
    assert writer.info.path == tmp_path / "pieces.h5"
    assert _contents(tmp_path / "pieces.h5") == _contents(tmp_path / "whole.h5")
    assert open_domain(tmp_path / "pieces.h5").has_groups
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pieces.h5", "whole.h5"]


def test_chunks_are_cast_to_the_stored_dtype(tmp_path):
    splits = make_splits()
    with _writer(tmp_path / "half.h5", x_dtype="float16") as writer:
        _append_in_pieces(writer, splits, size=16)
    assert writer.info.x_dtype == "float16"
    np.testing.assert_array_equal(read_split(writer.info.path, "val")[0], splits["val"].x.astype(np.float16))


def test_tokens_domain_in_pieces(tmp_path):
    rng = np.random.default_rng(0)
    with DomainWriter(tmp_path / "tok.h5", domain="tok", class_names=["a", "b"], provenance="test",
                      frame_shape=(2, 1, 3, 1), kind="tokens", vocab=["<pad>", "x", "y"]) as writer:
        for name in SPLITS:
            for _ in range(2):
                writer.append(name, rng.integers(0, 3, size=(4, 2, 1, 3, 1)), np.array([0, 1, 0, 1]))
    assert writer.info.x_dtype == "int32" and writer.info.split_sizes == {"train": 8, "val": 8, "test": 8}
    assert writer.info.vocab == ("<pad>", "x", "y")


def _nan(x, y):
    x = x.copy()
    x[2, 0, 0, 0, 1] = np.nan
    return x, y


@pytest.mark.parametrize("spoil, message", [
    (_nan, "split 'val' has NaN or inf in x (first at sample 12)"),  # sample 2 of the second chunk of 10
    (lambda x, y: (x, y + 3), "labels must lie in [0, 3)"),
    (lambda x, y: (x[:, :, :, :2], y), "differ in frame shape"),
    (lambda x, y: (x[:, 0], y), "rank 5"),
    (lambda x, y: (x, y[:-1]), "y must have shape (10,)"),
])
def test_a_bad_chunk_leaves_no_file_and_keeps_the_old_one(tmp_path, spoil, message):
    path = tmp_path / "Tiny.h5"
    write_domain(path, make_splits(seed=1), domain="Tiny", class_names=CLASS_NAMES, provenance="old")
    before = path.read_bytes()
    splits = make_splits()
    with pytest.raises(DomainFileError) as error:
        with _writer(path) as writer:
            for start in range(0, 48, 10):
                writer.append("train", splits["train"].x[start:start + 10], splits["train"].y[start:start + 10])
            writer.append("val", splits["val"].x[:10], splits["val"].y[:10])
            writer.append("val", *spoil(splits["val"].x[:10], splits["val"].y[:10]))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(path) in str(error.value)  # named after the destination, not the temporary file
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Tiny.h5"]


def test_an_error_in_the_callers_loop_removes_the_temporary_file(tmp_path):
    splits = make_splits()
    with pytest.raises(KeyboardInterrupt):
        with _writer(tmp_path / "out" / "Tiny.h5") as writer:
            writer.append("train", splits["train"].x, splits["train"].y)
            raise KeyboardInterrupt
    assert list((tmp_path / "out").iterdir()) == []


def test_ids_must_come_with_every_chunk_of_a_split(tmp_path):
    splits = make_splits()
    with pytest.raises(DomainFileError, match="same kind of ids"):
        with _writer(tmp_path / "Tiny.h5") as writer:
            writer.append("train", splits["train"].x[:10], splits["train"].y[:10], group=splits["train"].group[:10])
            writer.append("train", splits["train"].x[10:], splits["train"].y[10:])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("leave_out, message", [
    ("test", "split 'test' is empty"),
    ("leak", "leaks"),
    ("class", f"train split has no sample of {[CLASS_NAMES[2]]}"),
])
def test_whole_file_checks_run_before_the_rename(tmp_path, leave_out, message):
    splits = make_splits()
    if leave_out == "leak":
        splits["val"].group[0] = splits["train"].group[0]
    if leave_out == "class":
        keep = splits["train"].y != 2
        splits["train"].x, splits["train"].y, splits["train"].group = (
            splits["train"].x[keep], splits["train"].y[keep], splits["train"].group[keep])
    path = tmp_path / "Tiny.h5"
    with pytest.raises(DomainFileError) as error:
        with _writer(path) as writer:
            for name in SPLITS:
                if not (leave_out == "test" and name == "test"):
                    writer.append(name, splits[name].x, splits[name].y, group=splits[name].group)
    assert message in str(error.value) and str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_options_are_checked_before_any_file_is_made(tmp_path):
    with pytest.raises(DomainFileError, match="frame_shape must be 4 positive sizes"):
        _writer(tmp_path / "a.h5", frame_shape=(2, 3))
    with pytest.raises(DomainFileError, match="x_dtype of a frames domain must be float16 or float32"):
        _writer(tmp_path / "a.h5", x_dtype="float64")
    with pytest.raises(DomainFileError, match="kind must be one of"):
        _writer(tmp_path / "a.h5", kind="pixels")
    assert list(tmp_path.iterdir()) == []


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from convlstm_tl.data.writer import DomainWriter

    path, n_chunks, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    frame_shape = (10, 32, 32, 4)
    # Made in float32 directly: a float64 draw would set a high-water mark above what writing needs.
    block = np.random.default_rng(0).standard_normal(size=(chunk, *frame_shape), dtype=np.float32)
    labels = np.arange(chunk) % 2
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with DomainWriter(path, domain="big", class_names=["a", "b"], provenance="memory test",
                      frame_shape=frame_shape) as writer:
        for i in range(n_chunks):
            writer.append("train", block + np.float32(i), labels, group=np.full(chunk, i))
        for j, name in enumerate(("val", "test")):
            writer.append(name, block[:2], labels[:2], group=np.full(2, n_chunks + j))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "n": writer.info.split_sizes["train"]}))
""")


@pytest.mark.slow
def test_memory_stays_bounded_while_writing_a_large_file(tmp_path):
    # 20 chunks of 128 samples of 160 KiB: a 400 MiB file, written from 20 MiB at a time.
    path = tmp_path / "big.h5"
    n_chunks, chunk = 20, 128
    try:
        result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), str(n_chunks), str(chunk)],
                                capture_output=True, text=True, check=True, timeout=120)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        file_mib = path.stat().st_size / 2**20
        growth_mib = (figures["peak_kib"] - figures["baseline_kib"]) / 1024
    finally:
        path.unlink(missing_ok=True)
    assert figures["n"] == n_chunks * chunk
    assert file_mib > 390
    # The writer holds about one chunk (20 MiB) and its checks, never the file.
    assert growth_mib < 150, f"peak RSS grew by {growth_mib:.0f} MiB while writing a {file_mib:.0f} MiB file"
