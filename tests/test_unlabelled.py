"""Unlabelled domain files (samples to predict on), per-sample ``start``, and ``data_prep csv --unlabelled``."""

import json

import h5py
import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, data_prep_error_line, make_splits, write_tiny
from convlstm_tl.config import TrainConfig
from convlstm_tl.data.format import SplitArrays, open_domain
from convlstm_tl.data.reader import read_ids, read_split
from convlstm_tl.data.stats import summarize_domain
from convlstm_tl.data.writer import DomainWriter, write_domain
from convlstm_tl.errors import DomainFileError
from convlstm_tl.training.plans import plan_source
from data_prep.__main__ import main
from data_prep.csv_series import prepare_csv
from data_prep.windows import sliding_windows, to_frames

SPLITS = ("train", "val", "test")


def _unlabelled_arrays(n=10, *, seed=0, groups=(7, 8)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *FRAMES_1D)).astype(np.float32)
    group = np.array(groups)[np.arange(n) % len(groups)]
    return SplitArrays(x=x, y=None, group=group, recording=np.arange(n) // 3, start=(np.arange(n) % 3) * 5)


def _write_unlabelled(path, splits=None, **kwargs):
    splits = {"test": _unlabelled_arrays()} if splits is None else splits
    return write_domain(path, splits, domain=path.stem, class_names=[], provenance="new recordings", **kwargs)


def _one_line(error):
    text = str(error.value)
    assert "\n" not in text, text
    return text


def _refusal(path):
    return f"{path} holds no labels (written by data_prep csv --unlabelled); predict on it with python -m" \
           " convlstm_tl.predict"


# ------------------------------------------------------------ the file format


def test_unlabelled_round_trip(tmp_path):
    arrays = _unlabelled_arrays()
    info = _write_unlabelled(tmp_path / "new.h5", {"test": arrays})
    assert not info.labelled and info.class_names == () and info.n_classes == 0
    assert info.split_sizes == {"test": 10} and info.frame_shape == FRAMES_1D and info.has_groups
    assert open_domain(info.path, labelled=None) == info
    with h5py.File(info.path) as f:
        assert bool(f.attrs["labelled"]) is False and json.loads(f.attrs["class_names"]) == []
        assert list(f) == ["test"] and sorted(f["test"]) == ["group", "recording", "start", "x"]
        assert f["test/start"].dtype == np.int64
    x, y = read_split(info.path, "test")
    np.testing.assert_array_equal(x, arrays.x)
    assert y is None
    ids = read_ids(info.path, "test")
    assert sorted(ids) == ["group", "recording", "start"]
    for key, values in ids.items():
        np.testing.assert_array_equal(values, getattr(arrays, key))
    assert list(tmp_path.iterdir()) == [info.path]


def test_unlabelled_writer_streams_chunks_into_the_splits_it_is_given(tmp_path):
    a, b = _unlabelled_arrays(seed=1, groups=("u1",)), _unlabelled_arrays(seed=2, groups=("u2",))
    with DomainWriter(tmp_path / "new.h5", domain="new", class_names=None, provenance="p",
                      frame_shape=FRAMES_1D, x_dtype="float16") as writer:
        for arrays in (a, b):
            writer.append("val", arrays.x[:4], group=arrays.group[:4])
            writer.append("val", arrays.x[4:], group=arrays.group[4:])
        writer.append("train", a.x[:0])  # an empty chunk of a split that gets more later
        writer.append("train", b.x[:2], group=np.array(["u3", "u3"]))
    info = writer.info
    assert info.split_sizes == {"train": 2, "val": 20} and info.frame_shape == FRAMES_1D and info.x_dtype == "float16"
    np.testing.assert_array_equal(read_split(info.path, "val")[0], np.concatenate([a.x, b.x]).astype(np.float16))
    assert read_ids(info.path, "val")["group"].tolist() == ["u1"] * 10 + ["u2"] * 10
    assert read_ids(info.path, "train")["group"].tolist() == ["u3", "u3"]


def test_open_domain_refuses_an_unlabelled_file_by_default_in_one_line(tmp_path):
    info = _write_unlabelled(tmp_path / "new.h5")
    with pytest.raises(DomainFileError) as error:
        open_domain(info.path)
    assert _one_line(error) == _refusal(info.path)
    with pytest.raises(DomainFileError) as error:
        open_domain(info.path, check_values=False, labelled=True)
    assert _one_line(error) == _refusal(info.path)


def test_labelled_none_accepts_both_kinds_and_false_only_unlabelled(tiny_domain, tmp_path):
    assert open_domain(tiny_domain.path, labelled=None).labelled
    assert open_domain(tiny_domain.path, labelled=None) == open_domain(tiny_domain.path)
    assert not open_domain(_write_unlabelled(tmp_path / "new.h5").path, labelled=False).labelled
    with pytest.raises(DomainFileError, match="is a labelled domain file"):
        open_domain(tiny_domain.path, labelled=False)
    with pytest.raises(ValueError, match="labelled must be True, False or None"):
        open_domain(tiny_domain.path, labelled="yes")


def test_training_refuses_an_unlabelled_file_in_one_line(tmp_path, capsys):
    info = _write_unlabelled(tmp_path / "data" / "new.h5")
    config = TrainConfig(source="new", data_dir=str(info.path.parent), runs_dir=str(tmp_path / "runs"))
    with pytest.raises(DomainFileError) as error:
        plan_source(config)
    assert _one_line(error) == _refusal(info.path)
    assert not (tmp_path / "runs").exists()


def test_a_labelled_writer_refuses_missing_labels_and_an_unlabelled_one_refuses_labels(tmp_path):
    splits = make_splits()
    splits["val"].y = None
    with pytest.raises(DomainFileError) as error:
        write_domain(tmp_path / "a.h5", splits, domain="a", class_names=CLASS_NAMES, provenance="p")
    assert "split 'val' got no labels (y=None), but the file is labelled" in _one_line(error)
    with pytest.raises(DomainFileError) as error:
        with DomainWriter(tmp_path / "a.h5", domain="a", class_names=CLASS_NAMES, provenance="p",
                          frame_shape=FRAMES_1D) as writer:
            writer.append("train", splits["train"].x)
    assert "split 'train' got no labels" in _one_line(error)
    arrays = _unlabelled_arrays()
    arrays.y = np.zeros(len(arrays.x), dtype=np.int64)
    with pytest.raises(DomainFileError) as error:
        _write_unlabelled(tmp_path / "b.h5", {"test": arrays})
    assert "split 'test' got labels y, but the file is unlabelled (class_names=[]); give y=None" in _one_line(error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("splits, message", [
    ({}, "no split given; an unlabelled file needs at least one of"),
    ({"tset": None}, "split must be one of"),
    ({"val": _unlabelled_arrays(groups=(1,)), "test": _unlabelled_arrays(groups=(1,))},
     "group 1 is in both 'val' and 'test'"),
    ({"val": _unlabelled_arrays(), "test": SplitArrays(x=_unlabelled_arrays().x, y=None)},
     "group ids are in ['val'] only; give them for every split or none"),
    ({"test": SplitArrays(x=np.zeros((0, *FRAMES_1D)), y=None)}, "split 'test' is empty"),
])
def test_unlabelled_files_keep_the_other_checks(tmp_path, splits, message):
    with pytest.raises(DomainFileError) as error:
        _write_unlabelled(tmp_path / "new.h5", splits)
    assert message in _one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_a_labelled_file_still_needs_every_split(tmp_path):
    splits = make_splits()
    del splits["val"]
    with pytest.raises(DomainFileError, match=r"splits \['val'\] are missing"):
        write_domain(tmp_path / "a.h5", splits, domain="a", class_names=CLASS_NAMES, provenance="p")


def test_no_samples_at_all_is_refused(tmp_path):
    with pytest.raises(DomainFileError, match="no samples were given"):
        with DomainWriter(tmp_path / "new.h5", domain="new", class_names=[], provenance="p", frame_shape=FRAMES_1D):
            pass
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- start


def test_start_round_trip_in_a_labelled_file(tmp_path):
    splits = make_splits()
    for arrays in splits.values():
        arrays.start = np.arange(len(arrays.x)) * 3
    info = write_domain(tmp_path / "a.h5", splits, domain="a", class_names=CLASS_NAMES, provenance="p")
    assert open_domain(info.path).labelled
    for name, arrays in splits.items():
        ids = read_ids(info.path, name)
        assert sorted(ids) == ["group", "start"]
        np.testing.assert_array_equal(ids["start"], arrays.start)
        assert ids["start"].dtype == np.int64


def test_read_ids_is_empty_without_ids(tmp_path):
    info = write_tiny(tmp_path)
    with h5py.File(info.path, "a") as f:
        for name in SPLITS:
            del f[name]["group"]
    assert read_ids(info.path, "train") == {}


@pytest.mark.parametrize("start, message", [
    (-np.arange(10), "start must be >= 0 (a time step within the recording). Received: min=-9"),
    (np.arange(9), "start must have shape (10,) to match x. Received: start.shape=(9,)"),
    (np.arange(10) * 0.5, "start must hold integer time steps. Received: dtype=float64"),
    (np.array(["a"] * 10), "start must hold integer time steps"),
])
def test_start_is_checked(tmp_path, start, message):
    arrays = _unlabelled_arrays()
    arrays.start = start
    with pytest.raises(DomainFileError) as error:
        _write_unlabelled(tmp_path / "new.h5", {"test": arrays})
    assert f"split 'test': {message}" in _one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_start_in_some_splits_only_is_refused(tmp_path):
    splits = make_splits()
    splits["train"].start = np.zeros(len(splits["train"].x), dtype=np.int64)
    with pytest.raises(DomainFileError) as error:
        write_domain(tmp_path / "a.h5", splits, domain="a", class_names=CLASS_NAMES, provenance="p")
    assert "start is in ['train'] only; give it for every split or none" in _one_line(error)


def test_start_is_not_an_id(tmp_path):
    # The same starts in every split are fine: positions, not ids, so no leak check.
    splits = make_splits()
    for arrays in splits.values():
        arrays.start = np.zeros(len(arrays.x), dtype=np.int64)
    assert write_domain(tmp_path / "a.h5", splits, domain="a", class_names=CLASS_NAMES, provenance="p").labelled


# ----------------------------------------------------------- hand-made files


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.parametrize("labelled_file, edit, message", [
    (False, lambda f: f["test"].create_dataset("y", data=np.zeros(10, np.int64)),
     "split 'test' has a 'y' dataset but the file is unlabelled (labelled=false)"),
    (True, lambda f: [f[name].__delitem__("y") for name in SPLITS], "split 'train' has no 'y' dataset"),
    (False, lambda f: f.attrs.__setitem__("class_names", '["a"]'),
     "is unlabelled (labelled=false) but has class_names ['a']"),
    (False, lambda f: f.attrs.__setitem__("labelled", "no"), "attribute labelled must be true or false"),
    (False, lambda f: f.__delitem__("test"), "has none of the splits ['train', 'val', 'test']"),
    (False, lambda f: f["test"].__delitem__("x"), "split 'test' has no 'x' dataset"),
    (False, lambda f: f["test"]["start"].__setitem__(0, -1), "start must be >= 0"),
    (True, lambda f: f.attrs.__setitem__("labelled", False), "holds no labels"),
])
def test_hand_made_files_are_refused_in_one_line(tiny_domain, tmp_path, labelled_file, edit, message):
    path = tiny_domain.path if labelled_file else _write_unlabelled(tmp_path / "new.h5").path
    _edit(path, edit)
    with pytest.raises(DomainFileError) as error:
        open_domain(path, labelled=None if "holds no labels" not in message else True)
    assert message in _one_line(error) and str(path) in str(error.value)


def test_an_explicit_labelled_true_attribute_is_a_labelled_file(tiny_domain):
    _edit(tiny_domain.path, lambda f: f.attrs.__setitem__("labelled", True))
    assert open_domain(tiny_domain.path).labelled


# --------------------------------------------------- info and check


def test_info_and_check_show_an_unlabelled_file(tmp_path, capsys):
    info = _write_unlabelled(tmp_path / "new.h5")
    summary = summarize_domain(info.path)
    assert summary["labelled"] is False and summary["class_names"] == []
    assert summary["splits"] == {"test": {"n": 10, "per_class": {}, "n_groups": 2}}
    assert main(["info", str(info.path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ") and line.strip()}
    assert rows["classes"][:2] == ["none:", "unlabelled"] and "class" not in rows
    assert rows["split"] == ["test"] and rows["total"] == ["10"] and rows["groups"] == ["2"]
    assert main(["check", str(info.path)]) == 0
    assert "frames, unlabelled, test 10 samples" in capsys.readouterr().out
    assert summarize_domain(write_tiny(tmp_path / "l").path)["labelled"] is True


# ------------------------------------------------- data_prep csv --unlabelled


def _write_rows(path, *, subjects=6, rows=40, header="subject,activity,ax,ay"):
    """Every (subject, activity) is its own group, so labelled and unlabelled recordings are the same rows."""
    lines = [header]
    for s in range(subjects):
        for a, activity in enumerate(("run", "sit", "walk")):
            for t in range(rows + s):  # recordings of different lengths
                code = s * 10000 + a * 1000 + t
                lines.append(f"s{s}-{activity},{activity},{code},{-code}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv_argv(path, out, domain, *options):
    return ["csv", "--input", str(path), "--domain", domain, "--out", str(out), "--group-column", "subject",
            "--label-column", "activity", "--window", "10", "--frames", "5", "--overlap", "0.3", *options]


def test_unlabelled_csv_cuts_the_same_windows_as_the_labelled_conversion(tmp_path, capsys):
    path = _write_rows(tmp_path / "in.csv")
    assert main(_csv_argv(path, tmp_path, "new", "--unlabelled")) == 0
    assert "new.h5: test" in capsys.readouterr().out
    assert main(_csv_argv(path, tmp_path, "old")) == 0
    new = open_domain(tmp_path / "new.h5", labelled=None)
    assert not new.labelled and list(new.split_sizes) == ["test"] and new.frame_shape == (5, 1, 2, 2)
    x, y = read_split(new.path, "test")
    ids = read_ids(new.path, "test")
    assert y is None and sorted(ids) == ["group", "recording", "start"]

    # The windows of each recording, in file order, as sliding_windows cuts the raw rows (step round(10 * 0.7) = 7).
    expected, recordings, starts, groups = [], [], [], []
    for r, (s, a) in enumerate((s, a) for s in range(6) for a in range(3)):
        rows = np.array([[c, -c] for c in (s * 10000 + a * 1000 + np.arange(40 + s))], dtype=np.float32)
        windows = sliding_windows(rows, 10, 7)
        expected.append(to_frames(windows, 5))
        recordings += [r] * len(windows)
        starts += list(range(0, 7 * len(windows), 7))
        groups += [f"s{s}-{('run', 'sit', 'walk')[a]}"] * len(windows)
    np.testing.assert_array_equal(x, np.concatenate(expected))
    np.testing.assert_array_equal(ids["recording"], recordings)
    np.testing.assert_array_equal(ids["start"], starts)
    assert ids["group"].tolist() == groups
    # start is the row of the window's first time step: ax codes the row.
    np.testing.assert_array_equal(x[:, 0, 0, 0, 0] % 1000, ids["start"])

    # The labelled file holds the same windows, spread over its splits, with the same recording and start.
    by_position = {(rec, st): sample for rec, st, sample in zip(ids["recording"], ids["start"], x)}
    old = open_domain(tmp_path / "old.h5")
    assert sum(old.split_sizes.values()) == len(x)
    for name in SPLITS:
        old_x, _ = read_split(old.path, name)
        old_ids = read_ids(old.path, name)
        for rec, st, sample in zip(old_ids["recording"], old_ids["start"], old_x):
            np.testing.assert_array_equal(sample, by_position.pop((rec, st)))
    assert not by_position

    provenance = json.loads(new.provenance)
    labelled_provenance = json.loads(old.provenance)
    assert set(provenance) == set(labelled_provenance) | {"labelled"}
    assert provenance["labelled"] is False and provenance["split"] == "none: every window is in test (unlabelled)"
    assert provenance["counts"] == {"test": len(x)} and provenance["recordings"] == 18 and provenance["step"] == 7
    assert provenance["columns"]["channels"] == ["ax", "ay"] and provenance["columns"]["label"] is None
    assert "start" in provenance["ids"] and "start" in labelled_provenance["ids"]


def test_unlabelled_csv_without_a_label_column(tmp_path, capsys):
    lines = ["group,ax,ay"] + [f"{g},{t},{-t}" for g in (3, 4) for t in range(25)]
    path = tmp_path / "nolabel.csv"
    path.write_text("\n".join(lines) + "\n")
    argv = ["csv", "--input", str(path), "--domain", "new", "--out", str(tmp_path / "data"), "--window", "10",
            "--frames", "2", "--overlap", "0"]
    line = data_prep_error_line(argv, capsys)
    assert "has no column 'label'" in line and "--unlabelled" in line
    assert not (tmp_path / "data").exists()
    assert main([*argv, "--unlabelled", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    info = open_domain(tmp_path / "data" / "new.h5", labelled=None)
    ids = read_ids(info.path, "test")
    assert info.split_sizes == {"test": 4} and ids["group"].dtype == np.int64
    assert ids["group"].tolist() == [3, 3, 4, 4] and ids["recording"].tolist() == [0, 0, 1, 1]
    assert ids["start"].tolist() == [0, 10, 0, 10]


def test_the_label_column_is_no_default_channel_but_may_be_named(tmp_path):
    lines = ["group,label,ax"] + [f"g,{t % 3},{t}" for t in range(20)]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    options = dict(window=10, frames=2, labelled=False)
    info = prepare_csv(path, "a", tmp_path, **options)
    assert info.frame_shape == (2, 1, 5, 1)
    # Unread as labels, the label column does not cut recordings: 20 rows, one recording.
    assert read_ids(info.path, "test")["recording"].tolist() == [0, 0, 0]
    info = prepare_csv(path, "b", tmp_path, channels=["label", "ax"], **options)
    assert info.frame_shape == (2, 1, 5, 2)


@pytest.mark.parametrize("options, message", [
    (["--val", "0.2"], "--val, --test and --seed split labelled data; an unlabelled file is not split"),
    (["--seed", "0"], "Received: seed=0"),
    (["--test", "0.1", "--val", "0.1"], "Received: val=0.1, test=0.1"),
    (["--window", "60", "--frames", "5"], "no recording is as long as the window, so there are no windows; use a"
                                          " smaller --window (the longest recording has 45 rows)"),
    (["--channels", "ax,subject"], "column 'subject' cannot be both a channel and the group"),
    (["--recording-column", "t"], "has no column 't'"),
])
def test_unlabelled_csv_refusals_exit_2_in_one_line(tmp_path, capsys, options, message):
    path = _write_rows(tmp_path / "in.csv")
    line = data_prep_error_line(_csv_argv(path, tmp_path / "data", "new", "--unlabelled", *options), capsys)
    assert message in line
    assert not (tmp_path / "data").exists()


def test_labelled_csv_still_takes_the_split_options(tmp_path):
    path = _write_rows(tmp_path / "in.csv")
    assert main(_csv_argv(path, tmp_path, "a", "--val", "0.2", "--test", "0.2", "--seed", "3")) == 0
    assert "seed 3" in json.loads(open_domain(tmp_path / "a.h5").provenance)["split"]
