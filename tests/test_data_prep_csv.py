"""Tests of ``data_prep.csv_series`` and ``python -m data_prep csv``."""

import json

import h5py
import numpy as np
import pytest

from conftest import data_prep_error_line
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_split
from data_prep import csv_series, watch, windows
from data_prep.__main__ import main
from data_prep.csv_series import prepare_csv, read_recordings

SPLITS = ("train", "val", "test")
LABELS = ("run", "sit", "walk")


def write_csv(path, *, subjects=6, rows=40, header="subject,activity,t,ax,ay", delimiter=","):
    """Subjects doing every activity in turn; ``ax`` codes subject, activity and row, ``ay`` = -ax."""
    lines = [header.replace(",", delimiter)]
    for s in range(subjects):
        for a, activity in enumerate(LABELS):
            for t in range(rows):
                code = s * 10000 + a * 1000 + t
                lines.append(delimiter.join([f"s{s}", activity, str(t), str(code), str(-code)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_windowing_helpers_are_shared_with_watch():
    assert csv_series.sliding_windows is windows.sliding_windows is watch.sliding_windows
    assert csv_series.to_frames is windows.to_frames is watch.to_frames


def test_read_recordings_cuts_at_group_and_label_changes(tmp_path):
    path = write_csv(tmp_path / "in.csv", subjects=2, rows=5)
    recordings, channels = read_recordings(path, group_column="subject", label_column="activity",
                                           channels=["ax", "ay"])
    assert channels == ["ax", "ay"]
    assert [(r["group"], r["label"]) for r in recordings] == [(f"s{s}", a) for s in range(2) for a in LABELS]
    assert all(r["values"].shape == (5, 2) for r in recordings)
    assert recordings[1]["first_line"] == 7  # header, then 5 rows of the first recording


def test_windows_never_cross_recordings_and_groups_stay_in_one_split(tmp_path):
    path = write_csv(tmp_path / "in.csv", subjects=6, rows=40)
    info = prepare_csv(path, "mine", tmp_path, group_column="subject", label_column="activity",
                       channels=["ax", "ay"], window=10, overlap=0.5, frames=5)
    assert info.frame_shape == (5, 1, 2, 2) and info.class_names == LABELS
    # 40 rows, window 10, step 5 -> 7 windows per recording; 6 subjects x 3 activities.
    assert sum(info.split_sizes.values()) == 6 * 3 * 7
    seen = {}
    for name in SPLITS:
        x, y = read_split(info.path, name)
        ax = x[..., 0].reshape(len(x), 10)
        np.testing.assert_array_equal(x[..., 1].reshape(len(x), 10), -ax)
        np.testing.assert_array_equal(np.diff(ax, axis=1), 1.0)  # consecutive rows of one recording
        np.testing.assert_array_equal((ax[:, 0] % 10000) // 1000, y)  # the recording's label
        with h5py.File(info.path) as f:
            group = f[name]["group"][()].astype(str)
            recording = f[name]["recording"][()]
        np.testing.assert_array_equal([f"s{int(v)}" for v in ax[:, 0] // 10000], group)
        np.testing.assert_array_equal(recording, (ax[:, 0] // 10000) * 3 + y)
        seen[name] = set(group.tolist())
    assert all(seen.values())
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    provenance = json.loads(info.provenance)
    assert provenance["step"] == 5 and provenance["frame_width"] == 2 and provenance["recordings"] == 18


def test_default_columns_and_numeric_groups(tmp_path):
    lines = ["group,label,x"]
    for g in range(5):
        for label in ("a", "b"):
            lines += [f"{g},{label},{t}" for t in range(20)]
    (tmp_path / "in.csv").write_text("\n".join(lines))
    info = prepare_csv(tmp_path / "in.csv", "plain", tmp_path, window=10, frames=2)
    assert info.frame_shape == (2, 1, 5, 1) and info.has_groups
    with h5py.File(info.path) as f:
        assert f["train"]["group"].dtype == np.int64


def test_recording_column_and_delimiter(tmp_path):
    path = write_csv(tmp_path / "in.csv", subjects=3, rows=20, header="subject,activity,t,ax,ay", delimiter=";")
    recordings, channels = read_recordings(path, group_column="subject", label_column="activity",
                                           recording_column="t", delimiter=";")
    # Every row has its own t, so every row starts a recording.
    assert len(recordings) == 3 * 3 * 20 and channels == ["ax", "ay"]


def _argv(path, out, *options):
    return ["csv", "--input", str(path), "--domain", "bad", "--out", str(out), "--group-column", "subject",
            "--label-column", "activity", *options]


@pytest.mark.parametrize("options, message", [
    (["--window", "0"], "window must be a positive"),
    (["--overlap", "1"], "overlap must be a fraction"),
    (["--window", "10", "--frames", "3"], "multiple of frames"),
    (["--window", "50", "--frames", "5"], "gets no windows"),
    (["--val", "0.6", "--test", "0.4"], "val + test < 1"),
    (["--channels", "ax,gyro"], "no channel column 'gyro'"),
    (["--channels", "ax,subject"], "cannot be both"),
    (["--label-column", "y"], "no column 'y'"),
    (["--delimiter", ";;"], "the delimiter must be one character"),
    (["--delimiter", '"'], "the delimiter must be one character"),
])
def test_bad_options_exit_2(options, message, tmp_path, capsys):
    path = write_csv(tmp_path / "in.csv", rows=40)
    assert message in data_prep_error_line(_argv(path, tmp_path / "data", "--window", "10", "--frames", "5", *options),
                                  capsys)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines.__setitem__(5, "s0,run,4,oops,1"), "line 6: column 'ax' must be a number"),
    (lambda lines: lines.__setitem__(3, "s0,run,2,nan,1"), "line 4: column 'ax' is nan"),
    (lambda lines: lines.__setitem__(3, "s0,run,2,1"), "line 4: expected 5 fields"),
    (lambda lines: lines.__setitem__(3, ",run,2,1,1"), "line 4: the group is empty"),
    (lambda lines: lines.__setitem__(0, "subject,activity,t,ax,ax"), "twice"),
    (lambda lines: lines.__delitem__(slice(0, None)), "is empty"),
])
def test_bad_rows_exit_2_with_the_line(edit, message, tmp_path, capsys):
    path = write_csv(tmp_path / "in.csv", rows=40)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    assert message in data_prep_error_line(_argv(path, tmp_path, "--window", "10", "--frames", "5"), capsys)


def test_too_few_groups_or_classes_exit_2(tmp_path, capsys):
    path = write_csv(tmp_path / "two.csv", subjects=2, rows=40)
    assert "too few to split" in data_prep_error_line(_argv(path, tmp_path, "--window", "10", "--frames", "5"), capsys)
    lines = [line for line in write_csv(tmp_path / "one.csv").read_text().splitlines() if ",sit," not in line
             and ",walk," not in line]
    (tmp_path / "one.csv").write_text("\n".join(lines))
    assert "at least 2" in data_prep_error_line(_argv(tmp_path / "one.csv", tmp_path, "--window", "10", "--frames", "5"),
                                       capsys)
    assert "not found" in data_prep_error_line(_argv(tmp_path / "none.csv", tmp_path), capsys)


def test_cli_writes_and_reports(tmp_path, capsys):
    path = write_csv(tmp_path / "in.csv")
    assert main(_argv(path, tmp_path, "--channels", "ax", "--window", "20", "--frames", "4", "--overlap", "0")) == 0
    assert "bad.h5" in capsys.readouterr().out
    info = open_domain(tmp_path / "bad.h5")
    assert info.frame_shape == (4, 1, 5, 1) and sum(info.split_sizes.values()) == 6 * 3 * 2
