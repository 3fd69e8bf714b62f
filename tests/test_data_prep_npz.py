"""Tests of ``data_prep.npz`` and ``python -m data_prep npz``."""

import json

import numpy as np
import pytest

from conftest import data_prep_error_line
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_labels, read_split
from data_prep.__main__ import main
from data_prep.npz import prepare_npz, to_thwc

SPLITS = ("train", "val", "test")


def _coded(shape, n=60):
    """Samples whose every value is the sample's index, so a test can find where each went."""
    return np.broadcast_to(np.arange(n, dtype=np.float32).reshape((n,) + (1,) * len(shape)), (n, *shape)).copy()


def _all(path):
    xs, ys = {}, {}
    for name in SPLITS:
        xs[name], ys[name] = read_split(path, name)
    return xs, ys


@pytest.mark.parametrize("layout, shape, frame, expected", [
    ("NTHWC", (4, 3, 5, 2), None, (4, 3, 5, 2)),
    ("NTWC", (4, 5, 2), None, (4, 1, 5, 2)),
    ("NTC", (12, 2), 3, (4, 1, 3, 2)),
])
def test_layouts_become_thwc(layout, shape, frame, expected, tmp_path):
    x = np.random.default_rng(0).normal(size=(30, *shape))
    np.savez(tmp_path / "in.npz", x=x, y=np.arange(30) % 3)
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path, layout=layout, frame=frame)
    assert info.frame_shape == expected and info.x_dtype == "float32"
    assert info.class_names == ("0", "1", "2")


def test_ntc_frames_keep_time_order():
    x = np.arange(2 * 12 * 2).reshape(2, 12, 2)
    frames = to_thwc(x, "NTC", 4)
    np.testing.assert_array_equal(frames[:, 1, 0], x[:, 4:8])
    np.testing.assert_array_equal(frames.reshape(2, 12, 2), x)


def test_string_labels_and_class_names_keep_the_given_order(tmp_path):
    x = _coded((2, 1, 3, 1))
    names = np.array(["sit", "walk", "run"])
    y = names[np.arange(60) % 3]
    np.savez(tmp_path / "in.npz", x=x, y=y, class_names=np.array(["walk", "run", "sit"]))
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path)
    assert info.class_names == ("walk", "run", "sit")
    xs, ys = _all(info.path)
    for name in SPLITS:
        # Each sample keeps its label: sample i was names[i % 3].
        index = xs[name][:, 0, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(np.array(info.class_names)[ys[name]], names[index % 3])


def test_sparse_integer_labels_map_to_ids(tmp_path):
    np.savez(tmp_path / "in.npz", x=_coded((2, 1, 2, 1)), y=np.array([3, 7, 9])[np.arange(60) % 3])
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path)
    assert info.class_names == ("3", "7", "9")


def test_stratified_split_without_groups(tmp_path):
    np.savez(tmp_path / "in.npz", x=_coded((2, 1, 2, 1), n=100), y=np.repeat([0, 1], [80, 20]))
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path, val=0.2, test=0.1)
    counts = {name: np.bincount(read_labels(info.path, name)[0]).tolist() for name in SPLITS}
    assert counts == {"train": [56, 14], "val": [16, 4], "test": [8, 2]}
    assert not info.has_groups


def test_groups_never_in_two_splits(tmp_path):
    n = 120
    groups = np.array([f"subject{i // 6}" for i in range(n)])  # 20 subjects of 6 samples
    np.savez(tmp_path / "in.npz", x=_coded((2, 1, 2, 1), n=n), y=(np.arange(n) // 6) % 2, group=groups)
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path)
    assert info.has_groups
    seen = {name: set(read_labels(info.path, name)[1].tolist()) for name in SPLITS}
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert sum(len(s) for s in seen.values()) == 20


def test_split_array_is_used_as_given(tmp_path):
    split = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    np.savez(tmp_path / "in.npz", x=_coded((2, 1, 2, 1)), y=np.arange(60) % 2, split=split)
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path)
    xs, _ = _all(info.path)
    np.testing.assert_array_equal(xs["val"][:, 0, 0, 0, 0], np.arange(40, 50))
    assert json.loads(info.provenance)["split"] == "as given in the file"


def test_per_split_keys(tmp_path):
    arrays = {}
    for name, n in (("train", 12), ("val", 4), ("test", 5)):
        arrays[f"x_{name}"] = np.full((n, 3, 2, 1), {"train": 0, "val": 1, "test": 2}[name], dtype=np.float32)
        arrays[f"y_{name}"] = np.array(["a", "b"])[np.arange(n) % 2]
        arrays[f"group_{name}"] = np.arange(n) + {"train": 0, "val": 100, "test": 200}[name]
    np.savez(tmp_path / "in.npz", **arrays)
    info = prepare_npz(tmp_path / "in.npz", "mine", tmp_path, layout="NTWC")
    assert info.split_sizes == {"train": 12, "val": 4, "test": 5} and info.frame_shape == (3, 1, 2, 1)
    xs, _ = _all(info.path)
    assert [float(xs[s].mean()) for s in SPLITS] == [0.0, 1.0, 2.0]


def _bad(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return str(tmp_path / "bad.npz")


X = np.zeros((30, 4, 1, 2, 1))
Y = np.arange(30) % 3


@pytest.mark.parametrize("arrays, options, message", [
    ({"x": X, "y": Y}, ["--layout", "NCHW"], "layout must be one of"),
    ({"x": X, "y": Y}, ["--layout", "NTC", "--frame", "2"], "rank 3 for layout NTC"),
    ({"x": np.zeros((30, 8, 2)), "y": Y}, ["--layout", "NTC"], "needs --frame W"),
    ({"x": np.zeros((30, 8, 2)), "y": Y}, ["--layout", "NTC", "--frame", "3"], "divisor of the time axis"),
    ({"x": X, "y": Y}, ["--frame", "2"], "--frame applies to layout NTC only"),
    ({"x": X, "y": Y[:20]}, [], "one label per sample"),
    ({"y": Y}, [], "lacks x"),
    ({"x": X, "y": np.zeros(30, dtype=int)}, [], "at least 2"),
    ({"x": X, "y": np.array(["a", "b", "c"])[Y], "class_names": np.array(["a", "b"])}, [], "not in class_names"),
    ({"x": X, "y": Y, "class_names": np.array(["a", "b"])}, [], "must index class_names"),
    ({"x": X, "y": Y + 0.5}, [], "non-integer"),
    ({"x": np.where(np.arange(30)[:, None, None, None, None] == 7, np.nan, X), "y": Y}, [], "first at sample 7"),
    ({"x": np.array(["a"] * 30), "y": Y}, [], "must hold numbers"),
    ({"x": X, "y": Y, "split": np.array(["train"] * 25 + ["val"] * 5)}, [], "leave test empty"),
    ({"x": X, "y": Y, "split": np.array(["train"] * 25 + ["dev"] * 5)}, [], "train, val or test"),
    ({"x": X, "y": Y, "group": np.arange(10)}, [], "one id per sample"),
    ({"x": X, "y": np.repeat([0, 1], [28, 2])}, [], "too few to split"),
    ({"x": X, "y": Y}, ["--val", "0"], "val ratio"),
    ({"x_train": X, "y_train": Y}, [], "lacks ['x_test'"),
    ({"x_train": X, "y_train": Y, "x_val": X}, [], "lacks ['y_val'"),
    ({"x_train": X, "y_train": Y, "x_test": X, "y_test": Y}, [], "no x_val; pass --val-from-train F"),
    ({"x": X, "y": Y, "split": np.array(["train"] * 25 + ["test"] * 5)}, [],
     "names no sample val; pass --val-from-train"),
    ({"x": X, "y": Y, "split": np.array(["train"] * 20 + ["val"] * 5 + ["test"] * 5)}, ["--val-from-train", "0.2"],
     "drop --val-from-train"),
    ({"x": X, "y": Y}, ["--val-from-train", "0.2"], "applies to splits the file gives"),
    ({"x_train": X, "y_train": Y, "x_test": X, "y_test": Y}, ["--val-from-train", "1.5"], "fraction in (0, 1)"),
    ({"x": np.zeros((30, 4, 12)), "y": Y}, ["--layout", "NTC", "--frame", "2"], "looks like (N, C, T)"),
    ({"x": X, "y": Y}, ["--confirm-layout"], "--confirm-layout applies to layout NTC only"),
])
def test_bad_input_exits_2_with_one_line(arrays, options, message, tmp_path, capsys):
    argv = ["npz", "--input", _bad(tmp_path, **arrays), "--domain", "bad", "--out", str(tmp_path), *options]
    assert message in data_prep_error_line(argv, capsys)
    assert not (tmp_path / "bad.h5").exists()


def test_unreadable_inputs_exit_2(tmp_path, capsys):
    ragged = np.empty(3, dtype=object)
    ragged[:] = [np.zeros(2), np.zeros(3), np.zeros(4)]
    np.savez(tmp_path / "ragged.npz", x=ragged, y=np.arange(3))
    (tmp_path / "text.npz").write_text("not a zip")
    np.save(tmp_path / "single.npy", X)
    for name, message in (("ragged.npz", "object arrays"), ("text.npz", "not a"), ("single.npy", "single array"),
                          ("missing.npz", "not found")):
        argv = ["npz", "--input", str(tmp_path / name), "--domain", "bad", "--out", str(tmp_path)]
        assert message in data_prep_error_line(argv, capsys)


def test_cli_writes_and_reports(tmp_path, capsys):
    path = _bad(tmp_path, x=np.random.default_rng(0).normal(size=(30, 12, 2)), y=Y)
    assert main(["npz", "--input", path, "--domain", "mine", "--out", str(tmp_path), "--layout", "NTC",
                 "--frame", "4"]) == 0
    assert "mine.h5" in capsys.readouterr().out
    assert open_domain(tmp_path / "mine.h5").frame_shape == (3, 1, 4, 2)


def test_ntc_with_more_channels_than_steps_needs_confirm_layout(tmp_path, capsys):
    path = _bad(tmp_path, x=np.random.default_rng(0).normal(size=(30, 4, 12)), y=Y)
    argv = ["npz", "--input", path, "--domain", "wide", "--out", str(tmp_path), "--layout", "NTC", "--frame", "2"]
    line = data_prep_error_line(argv, capsys)
    assert "transpose it to (N, T, C)" in line and "--confirm-layout" in line and "x.shape=(30, 4, 12)" in line
    assert not (tmp_path / "wide.h5").exists()
    assert main([*argv, "--confirm-layout", "--quiet"]) == 0
    assert open_domain(tmp_path / "wide.h5").frame_shape == (2, 1, 2, 12)


@pytest.mark.parametrize("arrays", [
    {"x": X, "y": Y, "group": np.arange(30) % 10, "split": np.array(["train"] * 20 + ["val"] * 5 + ["test"] * 5)},
    {"x_train": X[:20], "y_train": Y[:20], "group_train": np.arange(20),
     "x_val": X[:5], "y_val": Y[:5], "group_val": np.arange(20, 25),
     "x_test": X[:5], "y_test": Y[:5], "group_test": np.array([30, 31, 7, 32, 33])},
])
def test_a_group_in_two_given_splits_is_refused(arrays, tmp_path, capsys):
    argv = ["npz", "--input", _bad(tmp_path, **arrays), "--domain", "bad", "--out", str(tmp_path)]
    line = data_prep_error_line(argv, capsys)
    assert "is in both the given" in line and "must be in one split only" in line
    assert "group 0 is in both the given train and val" in line or "group 7 is in both the given train and test" in line
    assert not (tmp_path / "bad.h5").exists()


def _train_test_only(tmp_path, n_train=60, n_test=12):
    """Per-split keys without val, as UCR/UEA sets ship: 3 classes, subjects of 4 samples of one class."""
    rng = np.random.default_rng(0)
    arrays = {}
    for name, n, first in (("train", n_train, 0), ("test", n_test, 1000)):
        subject = np.arange(n) // 4 + first
        arrays[f"x_{name}"] = rng.normal(size=(n, 8, 2)).astype(np.float32)
        arrays[f"y_{name}"] = np.array(["a", "b", "c"])[subject % 3]
        arrays[f"group_{name}"] = subject
    np.savez(tmp_path / "ucr.npz", **arrays)
    return tmp_path / "ucr.npz"


def test_val_from_train_carves_val_out_of_train_by_group_and_label(tmp_path):
    source = _train_test_only(tmp_path)
    info = prepare_npz(source, "ucr", tmp_path / "a", layout="NTC", frame=4, val_from_train=0.25, seed=5)
    domain = open_domain(info.path)  # readable and valid: no group in two splits, every class in train
    assert domain.split_sizes == {"train": 48, "val": 12, "test": 12} and domain.has_groups
    labels = {name: read_labels(info.path, name) for name in SPLITS}
    assert not set(labels["train"][1].tolist()) & set(labels["val"][1].tolist())
    assert set(labels["val"][1].tolist()) < set(range(15))  # val comes from the given train subjects
    assert set(labels["val"][0].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(labels["test"][1], np.arange(12) // 4 + 1000)  # test untouched
    provenance = json.loads(info.provenance)
    assert provenance["val_from_train"] == {"fraction": 0.25, "seed": 5}
    assert "val carved out of the given train split" in provenance["split"] and "seed 5" in provenance["split"]
    again = prepare_npz(source, "ucr", tmp_path / "b", layout="NTC", frame=4, val_from_train=0.25, seed=5)
    for name in SPLITS:
        np.testing.assert_array_equal(read_split(info.path, name)[0], read_split(again.path, name)[0])
    other = prepare_npz(source, "ucr", tmp_path / "c", layout="NTC", frame=4, val_from_train=0.25, seed=6)
    assert set(read_labels(other.path, "val")[1].tolist()) != set(labels["val"][1].tolist())


def test_val_from_train_on_the_cli(tmp_path, capsys):
    source = str(_train_test_only(tmp_path))
    argv = ["npz", "--input", source, "--domain", "ucr", "--out", str(tmp_path), "--layout", "NTC", "--frame", "4"]
    assert "--val-from-train" in data_prep_error_line(argv, capsys)
    assert not (tmp_path / "ucr.h5").exists()
    assert main([*argv, "--val-from-train", "0.2"]) == 0
    assert "val 12" in capsys.readouterr().out
