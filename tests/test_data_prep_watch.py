"""Tests of ``data_prep.watch`` and the ``python -m data_prep watch`` command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_labels, read_split
from convlstm_tl.errors import UserError
from data_prep import watch
from data_prep.__main__ import SUBCOMMANDS, parse_args
from data_prep.watch import build_watch_domains, parse_subjects, sliding_windows, to_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")


def _fake_watch(n_subjects=4, length=40):
    """A tiny data set shaped like seglearn's: 7 recordings per (subject, side).

    Every value encodes where it came from (subject, side, exercise, time), so
    a test can tell from a window which recording and position it holds.
    """
    X, y, side, subject = [], [], [], []
    for s in range(1, n_subjects + 1):
        for arm in (1.0, 0.0):
            for exercise in range(7):
                t = np.arange(length, dtype=np.float64)
                code = s * 1e5 + arm * 1e4 + exercise * 1e3
                X.append(np.stack([code + t + c / 10 for c in range(6)], axis=1))
                y.append(exercise)
                side.append(arm)
                subject.append(s)
    return {
        "X": X, "y": np.array(y), "side": np.array(side), "subject": np.array(subject),
        "X_labels": ["ax", "ay", "az", "wx", "wy", "wz"], "y_labels": list(CLASS_NAMES),
    }


def test_sliding_windows_count_and_contents():
    signal = np.arange(20 * 3).reshape(20, 3)
    windows = sliding_windows(signal, 6, 4)
    # Starts 0, 4, 8, 12; a window at 16 would need samples past the end.
    assert windows.shape == (4, 6, 3)
    for i, start in enumerate((0, 4, 8, 12)):
        np.testing.assert_array_equal(windows[i], signal[start:start + 6])


@pytest.mark.parametrize("n, window, step, expected", [(10, 10, 3, 1), (9, 10, 3, 0), (100, 25, 25, 4), (101, 25, 5, 16)])
def test_sliding_windows_count_formula(n, window, step, expected):
    windows = sliding_windows(np.zeros((n, 2)), window, step)
    assert windows.shape == (expected, window, 2)


def test_sliding_windows_is_a_copy():
    signal = np.zeros((10, 1))
    windows = sliding_windows(signal, 4, 2)
    windows[0, 0, 0] = 1.0
    assert signal[0, 0] == 0.0


def test_sliding_windows_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received"):
        sliding_windows(np.zeros(10), 2, 1)
    with pytest.raises(ValueError, match="Received"):
        sliding_windows(np.zeros((10, 1)), 2, 0)


def test_to_frames_keeps_sample_order():
    windows = np.arange(2 * 12 * 3).reshape(2, 12, 3)
    frames = to_frames(windows, 4)
    assert frames.shape == (2, 4, 1, 3, 3)
    for t in range(4):
        np.testing.assert_array_equal(frames[:, t, 0], windows[:, t * 3:(t + 1) * 3])
    # Reading the frames back in order gives the window again.
    np.testing.assert_array_equal(frames.reshape(2, 12, 3), windows)


def test_to_frames_needs_a_divisor():
    with pytest.raises(ValueError, match="multiple of frames"):
        to_frames(np.zeros((1, 10, 2)), 3)


@pytest.mark.parametrize("spec, expected", [
    ("1-6", (1, 2, 3, 4, 5, 6)), ("1,2,3", (1, 2, 3)), ("7", (7,)), ("1-3, 7", (1, 2, 3, 7)),
    ("3,1,3", (1, 3)), ([8, 9, 10], (8, 9, 10)),
])
def test_parse_subjects(spec, expected):
    assert parse_subjects(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "1-", "3-1", "1,,2", []])
def test_parse_subjects_rejects(spec):
    with pytest.raises(UserError, match="Received"):
        parse_subjects(spec)


def test_windows_do_not_cross_recordings_and_keep_labels_and_groups():
    data = _fake_watch(length=40)
    domains = build_watch_domains(
        data, window=10, overlap=0.5, frames=2, train_subjects="1-2", val_subjects="3", test_subjects="4",
    )
    splits = domains["St"]["splits"]
    # 40 samples, window 10, step 5 -> 7 windows per recording, 7 recordings per subject.
    assert [len(splits[s].y) for s in ("train", "val", "test")] == [2 * 49, 49, 49]
    for arrays in splits.values():
        samples = arrays.x.reshape(len(arrays.x), 10, 6)
        codes = np.floor(samples / 1e3)  # subject, side, exercise of every value
        assert (codes == codes[:, :1]).all(), "a window mixes recordings"
        times = samples[:, :, 0] % 1e3
        np.testing.assert_array_equal(np.diff(times, axis=1), 1.0)
        subject = (samples[:, 0, 0] // 1e5).astype(int)
        exercise = ((samples[:, 0, 0] % 1e4) // 1e3).astype(int)
        np.testing.assert_array_equal(arrays.group, subject)
        np.testing.assert_array_equal(arrays.y, exercise)
        assert arrays.x.dtype == np.float32 and arrays.x.shape[1:] == (2, 1, 5, 6)


def test_arm_mapping_st_is_right_ms_is_left():
    data = _fake_watch()
    domains = build_watch_domains(data, window=10, frames=2, train_subjects="1-2", val_subjects="3", test_subjects="4")
    for domain, side in (("St", 1), ("ms", 0)):
        for arrays in domains[domain]["splits"].values():
            sides = (arrays.x[:, 0, 0, 0, 0] % 1e5) // 1e4
            assert (sides == side).all()
        assert domains[domain]["provenance"]["arm"] == ("right" if side else "left")


@pytest.mark.parametrize("options, message", [
    ({"window": 0}, "window must be a positive"),
    ({"window": -5}, "window must be a positive"),
    ({"frames": 0}, "frames must be a positive"),
    ({"overlap": 1.0}, "overlap must be a fraction"),
    ({"overlap": -0.1}, "overlap must be a fraction"),
    ({"window": 10, "frames": 3}, "multiple of frames"),
    ({"train_subjects": "1-3"}, "in both train and val"),
    ({"test_subjects": "4-5"}, "lack"),
    ({"window": 1000}, "gets no windows"),
])
def test_build_rejects_bad_options(options, message):
    settings = {"window": 10, "frames": 2, "train_subjects": "1-2", "val_subjects": "3", "test_subjects": "4"}
    settings.update(options)
    with pytest.raises(UserError, match=message) as error:
        build_watch_domains(_fake_watch(), **settings)
    assert "Received:" in str(error.value) and "\n" not in str(error.value)


def test_missing_seglearn_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "seglearn", None)
    monkeypatch.setitem(sys.modules, "seglearn.datasets", None)
    with pytest.raises(UserError, match=r"pip install -e \.\[data\]"):
        watch.prepare_watch(tmp_path)
    assert not any(tmp_path.iterdir())


def test_watch_is_registered():
    assert SUBCOMMANDS["watch"] == "data_prep.watch"
    args = parse_args(["watch", "--out", "somewhere", "--train-subjects", "1,2"])
    assert args.out == Path("somewhere") and args.train_subjects == "1,2" and args.window == watch.DEFAULT_WINDOW


def _run_cli(*args, cwd=REPO_ROOT):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "data_prep", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("options", [
    ["--window", "0"],
    ["--overlap", "1"],
    ["--frames", "7"],
    ["--train-subjects", "1-7"],
    ["--val-subjects", "x"],
    ["--window", "abc"],
    ["--no-such-option"],
])
def test_cli_option_errors_are_one_line_exit_2(options, tmp_path):
    result = _run_cli("watch", "--out", str(tmp_path / "data"), *options)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "error:" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


@pytest.fixture(scope="module")
def watch_files(tmp_path_factory):
    """The real data set, converted once with the default options."""
    pytest.importorskip("seglearn", reason="the real watch data need `pip install -e .[data]`")
    out = tmp_path_factory.mktemp("watch") / "data"
    result = _run_cli("watch", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow
def test_end_to_end_files(watch_files):
    out, result = watch_files
    assert sorted(p.name for p in out.iterdir()) == ["St.h5", "ms.h5"]
    assert "St.h5" in result.stdout and "ms.h5" in result.stdout
    for domain in ("St", "ms"):
        info = open_domain(out / f"{domain}.h5")
        assert info.domain == domain
        assert info.class_names == CLASS_NAMES
        assert info.frame_shape == (10, 1, 25, 6)
        assert info.x_dtype == "float32" and info.has_groups
        x, y = read_split(out / f"{domain}.h5", "train")
        assert x.shape == (info.split_sizes["train"], 10, 1, 25, 6)
        assert set(np.unique(y)) == set(range(7))
        provenance = json.loads(info.provenance)
        assert provenance["arm"] == {"St": "right", "ms": "left"}[domain]
        assert provenance["step"] == 125 and provenance["frame_width"] == 25
        assert provenance["channels"] == ["ax", "ay", "az", "wx", "wy", "wz"]
        assert provenance["counts"] == info.split_sizes
        assert "seglearn" in provenance["source"]


@pytest.mark.slow
def test_end_to_end_split_by_subject(watch_files):
    out, _ = watch_files
    expected = {"train": set(range(1, 7)), "val": {7}, "test": {8, 9, 10}}
    for domain in ("St", "ms"):
        seen = {}
        for split, subjects in expected.items():
            _, groups = read_labels(out / f"{domain}.h5", split)
            seen[split] = set(groups.tolist())
            assert seen[split] == subjects
        assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])


@pytest.mark.slow
def test_end_to_end_matches_raw_arm(watch_files):
    """St's first training sample is the first window of subject 1's right-arm PEN recording."""
    from seglearn.datasets import load_watch

    out, _ = watch_files
    data = load_watch()
    for domain, side in (("St", 1.0), ("ms", 0.0)):
        (index,) = np.flatnonzero((data["subject"] == 1) & (data["side"] == side) & (data["y"] == 0))
        x, y = read_split(out / f"{domain}.h5", "train", indices=[0])
        assert y[0] == 0
        np.testing.assert_allclose(x[0].reshape(250, 6), data["X"][index][:250].astype(np.float32))


@pytest.mark.slow
def test_quiet_prints_nothing(tmp_path):
    pytest.importorskip("seglearn", reason="the real watch data need `pip install -e .[data]`")
    result = _run_cli("watch", "--out", str(tmp_path), "--quiet", "--window", "100", "--frames", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert open_domain(tmp_path / "St.h5").frame_shape == (5, 1, 20, 6)


def test_mirror_left_negates_ax_wy_wz_of_the_left_arm_only():
    data = _fake_watch()
    settings = dict(window=10, frames=2, train_subjects="1-2", val_subjects="3", test_subjects="4")
    plain = build_watch_domains(data, **settings)
    mirrored = build_watch_domains(data, mirror_left=True, **settings)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(mirrored["St"]["splits"][split].x, plain["St"]["splits"][split].x)
        np.testing.assert_array_equal(
            mirrored["ms"]["splits"][split].x, plain["ms"]["splits"][split].x * np.array([-1, 1, 1, 1, -1, -1])
        )
    assert mirrored["ms"]["provenance"]["mirrored"].startswith("yes")
    assert plain["ms"]["provenance"]["mirrored"] == "no"
