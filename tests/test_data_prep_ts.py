"""Tests of ``data_prep.ts`` and ``python -m data_prep ts`` (UCR/UEA .ts files)."""

import json
import sys

import numpy as np
import pytest

from conftest import data_prep_error_line
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_split
from data_prep.__main__ import main
from data_prep.ts import default_frame, prepare_ts, resample

pytest.importorskip("aeon")

SPLITS = ("train", "val", "test")


def _write_ts(path, series, labels, *, class_list=None, equal_length=True):
    """Write ``series`` (each ``(C, steps)``) with ``labels`` as a .ts file, the way the UCR/UEA archives do."""
    channels = len(series[0])
    class_list = class_list or sorted(set(labels))
    lines = [
        "# written by a test",
        "@problemName Toy",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if channels == 1 else 'false'}",
        f"@dimensions {channels}",
        f"@equalLength {'true' if equal_length else 'false'}",
        f"@classLabel true {' '.join(class_list)}",
        "@data",
    ]
    for values, label in zip(series, labels):
        lines.append(":".join(",".join(repr(float(v)) for v in channel) for channel in values) + f":{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _coded(n, channels, steps, first=0):
    """Series whose every value says which series, channel and step it is: i + c/10 + t/1000."""
    i = np.arange(first, first + n)[:, None, None]
    c = np.arange(channels)[None, :, None]
    t = np.arange(steps)[None, None, :]
    return (i + c / 10 + t / 1000).astype(np.float64)


def _pair(tmp_path, *, per_class=10, channels=3, steps=20, classes=("a", "b", "c"), test_per_class=4):
    """A train/test pair of coded series; series i of a split has label classes[i % K]."""
    k = len(classes)
    train = _coded(per_class * k, channels, steps)
    test = _coded(test_per_class * k, channels, steps, first=1000)
    train_labels = [classes[i % k] for i in range(len(train))]
    test_labels = [classes[i % k] for i in range(len(test))]
    return (_write_ts(tmp_path / "Toy_TRAIN.ts", train, train_labels),
            _write_ts(tmp_path / "Toy_TEST.ts", test, test_labels), train, test)


def _series(path, split):
    """The samples of a split as ``(N, steps, C)`` and their labels."""
    x, y = read_split(path, split)
    n, frames, _, width, channels = x.shape
    return x.reshape(n, frames * width, channels), y


def test_equal_length_multivariate_keeps_the_series_and_the_test_split(tmp_path):
    train_file, test_file, train, test = _pair(tmp_path)
    info = prepare_ts("toy", tmp_path / "out", train_path=train_file, test_path=test_file)
    assert info.frame_shape == (10, 1, 2, 3)  # default: 10 frames of 20 / 10 steps
    assert info.class_names == ("a", "b", "c")
    assert info.split_sizes == {"train": 24, "val": 6, "test": 12}
    x_test, y_test = _series(info.path, "test")
    np.testing.assert_allclose(x_test, test.transpose(0, 2, 1), rtol=0, atol=1e-4)  # in file order, time first
    np.testing.assert_array_equal(y_test, np.arange(12) % 3)
    for name in ("train", "val"):
        x, y = _series(info.path, name)
        index = np.round(x[:, 0, 0]).astype(int)
        np.testing.assert_allclose(x, train[index].transpose(0, 2, 1), rtol=0, atol=1e-4)
        np.testing.assert_array_equal(y, index % 3)  # every series keeps its label
    provenance = json.loads(info.provenance)
    assert provenance["source"]["train"] == str(train_file.resolve())
    assert provenance["frame"] == 2 and provenance["frames"] == 10 and provenance["resampling"] == "none"


def test_channels_are_kept_in_the_given_order(tmp_path):
    train_file, test_file, _, test = _pair(tmp_path)
    info = prepare_ts("toy", tmp_path / "out", train_path=train_file, test_path=test_file, channels=[2, 0])
    assert info.frame_shape == (10, 1, 2, 2)
    x_test, _ = _series(info.path, "test")
    np.testing.assert_allclose(x_test[..., 0], test[:, 2], atol=1e-4)
    np.testing.assert_allclose(x_test[..., 1], test[:, 0], atol=1e-4)
    assert json.loads(info.provenance)["channels"] == {"kept": [2, 0], "in_file": 3}


def test_classes_keep_their_series_in_the_given_order(tmp_path):
    train_file, test_file, _, _ = _pair(tmp_path)
    info = prepare_ts("toy", tmp_path / "out", train_path=train_file, test_path=test_file, classes=["c", "a"])
    assert info.class_names == ("c", "a")
    assert info.split_sizes["test"] == 8 and sum(info.split_sizes.values()) == 20 + 8
    for name in SPLITS:
        x, y = _series(info.path, name)
        original = np.round(x[:, 0, 0]).astype(int) % 1000 % 3  # 0: a, 2: c
        np.testing.assert_array_equal(np.array(["a", "b", "c"])[original], np.array(info.class_names)[y])
    assert json.loads(info.provenance)["classes"] == {"kept": ["c", "a"],
                                                      "series_dropped": {"train": 10, "test": 4}}


def test_labels_keep_the_file_spelling_and_numbers_sort_as_numbers(tmp_path):
    series = _coded(24, 1, 10)
    words = ["Up", "Down", "Left"]
    _write_ts(tmp_path / "W_TRAIN.ts", series, [words[i % 3] for i in range(24)])
    _write_ts(tmp_path / "W_TEST.ts", series[:6], [words[i % 3] for i in range(6)])
    info = prepare_ts("words", tmp_path, train_path=tmp_path / "W_TRAIN.ts", test_path=tmp_path / "W_TEST.ts",
                      classes=["up", "LEFT"])  # matched ignoring case, as aeon lower-cases labels
    assert info.class_names == ("Up", "Left")
    numbers = [str(1 + i % 11) for i in range(44)]
    _write_ts(tmp_path / "N_TRAIN.ts", _coded(44, 1, 10), numbers)
    _write_ts(tmp_path / "N_TEST.ts", _coded(11, 1, 10), numbers[:11])
    info = prepare_ts("numbers", tmp_path, train_path=tmp_path / "N_TRAIN.ts", test_path=tmp_path / "N_TEST.ts")
    assert info.class_names == tuple(str(n) for n in range(1, 12))  # "2" before "10"


def _ramps(lengths, rng):
    """Channel 0 a ramp from a to b, channel 1 a constant, per series."""
    series = []
    for steps in lengths:
        a, b = rng.uniform(-5, 5, size=2)
        series.append(np.stack([np.linspace(a, b, steps), np.full(steps, a)]))
    return series


def _unequal_pair(tmp_path, rng=None):
    rng = rng or np.random.default_rng(0)
    lengths = [7 + (i * 5) % 7 for i in range(20)]  # 7 to 13 steps
    train, test = _ramps(lengths, rng), _ramps(lengths[:6], rng)
    labels = ["x", "y"] * 10
    return (_write_ts(tmp_path / "U_TRAIN.ts", train, labels, equal_length=False),
            _write_ts(tmp_path / "U_TEST.ts", test, labels[:6], equal_length=False), train, test)


def test_length_resamples_linearly_so_a_ramp_stays_a_ramp(tmp_path):
    train_file, test_file, _, test = _unequal_pair(tmp_path)
    info = prepare_ts("u", tmp_path / "out", train_path=train_file, test_path=test_file, length=12, frame=3)
    assert info.frame_shape == (4, 1, 3, 2)
    x_test, _ = _series(info.path, "test")
    for got, original in zip(x_test, test):
        np.testing.assert_allclose(got[:, 0], np.linspace(original[0, 0], original[0, -1], 12), atol=1e-5)
        np.testing.assert_allclose(got[:, 1], original[1, 0], atol=1e-6)
    provenance = json.loads(info.provenance)
    assert provenance["lengths_of_kept_series"] == {"min": 7, "max": 13}
    assert provenance["resampling"] == "linear interpolation per channel to 12 steps"
    assert provenance["frame_rule"] == "given (--frame)"


def test_resample_interpolates_between_steps():
    series = np.array([[0.0, 10.0], [1.0, 30.0], [4.0, 20.0]])
    np.testing.assert_allclose(resample(series, 5), [[0, 10], [0.5, 20], [1, 30], [2.5, 25], [4, 20]])
    np.testing.assert_array_equal(resample(series, 3), series)
    np.testing.assert_allclose(resample(series[:1], 4), np.repeat(series[:1], 4, axis=0))


@pytest.mark.parametrize("length, frame", [(100, 10), (150, 15), (24, 3), (25, 5), (427, 61), (1460, 146),
                                           (251, None), (4, None)])
def test_default_frame_aims_at_10_frames(length, frame):
    assert default_frame(length) == frame


def test_unequal_lengths_without_length_are_refused_with_the_range(tmp_path, capsys):
    train_file, test_file, _, _ = _unequal_pair(tmp_path)
    line = data_prep_error_line(["ts", "--train", str(train_file), "--test", str(test_file), "--domain", "u",
                                 "--out", str(tmp_path / "out")], capsys)
    assert "unequal lengths (7 to 13 steps)" in line and "--length" in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_val_is_carved_from_train_stratified_and_seeded(tmp_path):
    train_file, test_file, _, _ = _pair(tmp_path, per_class=10)

    def convert(name, **options):
        return prepare_ts(name, tmp_path / "out", train_path=train_file, test_path=test_file, **options)

    info = convert("a", seed=3)
    assert info.split_sizes == {"train": 24, "val": 6, "test": 12}  # default --val-from-train 0.2
    _, y_val = _series(info.path, "val")
    assert np.bincount(y_val).tolist() == [2, 2, 2]
    x_train, _ = _series(info.path, "train")
    x_val, _ = _series(info.path, "val")
    val_ids = set(np.round(x_val[:, 0, 0]).astype(int).tolist())
    assert val_ids < set(range(30)) and not val_ids & set(np.round(x_train[:, 0, 0]).astype(int).tolist())
    assert json.loads(info.provenance)["val_from_train"] == {"fraction": 0.2, "seed": 3}
    again = convert("b", seed=3)
    for name in SPLITS:
        np.testing.assert_array_equal(read_split(info.path, name)[0], read_split(again.path, name)[0])
    other = convert("c", seed=4)
    assert set(np.round(_series(other.path, "val")[0][:, 0, 0]).astype(int).tolist()) != val_ids
    wider = convert("d", val_from_train=0.5)
    assert wider.split_sizes == {"train": 15, "val": 15, "test": 12}


def test_missing_values_are_refused_or_filled(tmp_path, capsys):
    series = _coded(12, 2, 10)
    series[3, 1, 4:6] = np.nan
    labels = ["a", "b", "c"] * 4
    train_file = _write_ts(tmp_path / "M_TRAIN.ts", series, labels)
    test_file = _write_ts(tmp_path / "M_TEST.ts", _coded(4, 2, 10), labels[:4])
    argv = ["ts", "--train", str(train_file), "--test", str(test_file), "--domain", "m", "--out", str(tmp_path)]
    line = data_prep_error_line(argv, capsys)
    assert "series 4 has 2 missing value(s)" in line and "--fill-missing" in line
    assert not (tmp_path / "m.h5").exists()
    # Without class c, series 4 is the third kept one; messages still name its place in the file.
    assert "series 4 has 2 missing value(s)" in data_prep_error_line([*argv, "--classes", "a,b"], capsys)
    assert main([*argv, "--fill-missing", "--quiet"]) == 0
    x = np.concatenate([_series(tmp_path / "m.h5", name)[0] for name in ("train", "val")])
    filled = x[np.round(x[:, 0, 0]).astype(int) == 3][0]
    np.testing.assert_allclose(filled[:, 1], 3.1 + np.arange(10) / 1000, atol=1e-5)  # the line through the gap
    assert json.loads(open_domain(tmp_path / "m.h5").provenance)["missing_values"].startswith("2 filled")


@pytest.mark.parametrize("extra, expected", [
    (["--dataset", "NoSuchSet"], "bundles no classification data set 'NoSuchSet'"),
    (["--train", "{train}"], "--train needs --test"),
    (["--test", "{test}"], "--test needs --train"),
    ([], "give --dataset NAME"),
    (["--dataset", "BasicMotions", "--train", "{train}"], "not both"),
    (["--train", "{train}", "--test", "{test}", "--channels", "0,3"], "channel 3 is not in the data"),
    (["--train", "{train}", "--test", "{test}", "--channels", "0,x"], "--channels takes channel numbers"),
    (["--train", "{train}", "--test", "{test}", "--channels", "1,1"], "names a channel twice"),
    (["--train", "{train}", "--test", "{test}", "--classes", "a,zebra"], "class 'zebra' is not in the data"),
    (["--train", "{train}", "--test", "{test}", "--classes", "a"], "at least 2 classes"),
    (["--train", "{train}", "--test", "{test}", "--frame", "7"], "--frame 7 does not divide the series length 20"),
    (["--train", "{train}", "--test", "{test}", "--length", "30", "--frame", "7"], "--frame must divide --length"),
    (["--train", "{train}", "--test", "{test}", "--val-from-train", "1.5"], "fraction in (0, 1)"),
    (["--train", "{tmp}/nope.ts", "--test", "{test}"], "train file"),
    (["--train", "{test}", "--test", "{tmp}/garbage.ts"], "is not a readable .ts classification file"),
    (["--train", "{test}", "--test", "{tmp}/multi.ts"], "needs '@univariate false' in its header"),
])
def test_mistakes_are_one_line_and_exit_2(extra, expected, tmp_path, capsys):
    train_file, test_file, _, _ = _pair(tmp_path)
    (tmp_path / "garbage.ts").write_text("@data\n1,2,x:a\n")
    # The header defaults to univariate; a hand-written multichannel file often forgets to say otherwise.
    (tmp_path / "multi.ts").write_text("@classLabel true a b\n@data\n1,2:3,4:a\n1,2:3,4:b\n")
    out = tmp_path / "out"
    argv = ["ts", "--domain", "toy", "--out", str(out)]
    argv += [arg.format(train=train_file, test=test_file, tmp=tmp_path) for arg in extra]
    assert expected in data_prep_error_line(argv, capsys)
    assert not out.exists() or not list(out.iterdir())  # nothing written, not even a temporary file


def test_a_class_only_in_test_is_refused(tmp_path, capsys):
    series = _coded(6, 1, 10)
    train_file = _write_ts(tmp_path / "T_TRAIN.ts", series, ["a", "b"] * 3)
    test_file = _write_ts(tmp_path / "T_TEST.ts", series, ["a", "b", "c"] * 2)
    line = data_prep_error_line(["ts", "--train", str(train_file), "--test", str(test_file), "--domain", "t",
                                 "--out", str(tmp_path)], capsys)
    assert "class 'c' has no series in the train file" in line


def test_missing_aeon_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    train_file, test_file, _, _ = _pair(tmp_path)
    monkeypatch.setitem(sys.modules, "aeon", None)
    line = data_prep_error_line(["ts", "--train", str(train_file), "--test", str(test_file), "--domain", "t",
                                 "--out", str(tmp_path)], capsys)
    assert "pip install 'convlstm_tl[baselines]'" in line and "pip install aeon" in line
    assert not (tmp_path / "t.h5").exists()


def test_bundled_basic_motions_accelerometer(tmp_path, capsys):
    from aeon.datasets import load_from_ts_file

    from data_prep.ts import bundled_root

    assert main(["ts", "--dataset", "BasicMotions", "--channels", "0,1,2", "--domain", "bm-acc",
                 "--out", str(tmp_path)]) == 0
    assert "train 32, val 8, test 40 samples of shape (10, 1, 10, 3)" in capsys.readouterr().out
    info = open_domain(tmp_path / "bm-acc.h5")
    assert info.class_names == ("Badminton", "Running", "Standing", "Walking")
    x_test, y_test = _series(info.path, "test")
    raw, labels = load_from_ts_file(str(bundled_root() / "BasicMotions" / "BasicMotions_TEST.ts"))
    np.testing.assert_allclose(x_test, raw[:, :3].transpose(0, 2, 1).astype(np.float32))
    np.testing.assert_array_equal(np.char.lower(np.array(info.class_names)[y_test]), labels)
    provenance = json.loads(info.provenance)
    assert provenance["source"]["dataset"] == "BasicMotions" and provenance["source"]["bundled_with"].startswith("aeon")
