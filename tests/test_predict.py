"""Tests of prediction on new samples: ``convlstm_tl.deploy`` and ``python -m convlstm_tl.predict``."""

import csv
import io
import json

import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.cli.predict import FLAGS
from convlstm_tl.config import ModelConfig, TrainConfig
from convlstm_tl.data.reader import read_ids
from convlstm_tl.deploy.inputs import open_samples
from convlstm_tl.deploy.predict import predict_samples
from convlstm_tl.errors import UserError
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.predict import main as predict_main
from convlstm_tl.runs.resolve import load_run

# Every test here predicts with trained runs (the module's fixture trains two).
pytestmark = pytest.mark.slow

PROG = "python -m convlstm_tl.predict"
TINY_MODEL = ModelConfig(filters=(4,), head_units=8, head_dropout=0.25)
LABELS = ("rest", "walk", "run")
CHANNELS = ("ax", "ay")
WINDOW, FRAMES, OVERLAP = 16, 4, 0.5


def write_long_csv(path, *, groups=12, rows=40, seed=0, labelled=True, channels=CHANNELS):
    """Per group one recording of each label; channel ax's level is the label's index (a learnable signal)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", *(["label"] if labelled else []), *channels])
        for group in range(groups):
            for index, label in enumerate(LABELS):
                for _ in range(rows):
                    values = rng.normal(0.0, 0.3, len(channels))
                    values[0] += index
                    writer.writerow([f"s{group}", *([label] if labelled else []), *(f"{v:.5f}" for v in values)])
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A domain cut from a long CSV, a source run trained on it, and a tiny run with no window recipe."""
    from convlstm_tl.training.source import train_source
    from data_prep.csv_series import prepare_csv

    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    table = write_long_csv(root / "long.csv")
    prepare_csv(table, "Long", data, window=WINDOW, frames=FRAMES, overlap=OVERLAP)
    common = dict(data_dir=str(data), runs_dir=str(root / "runs"), epochs=3, batch_size=16, lr=1e-2, seed=0,
                  model=TINY_MODEL)
    run_dir = train_source(TrainConfig(source="Long", **common), verbose=0).run_dir
    tiny = write_tiny(data)
    tiny_dir = train_source(TrainConfig(source=tiny.name, **common), verbose=0).run_dir
    return root, table, data / "Long.h5", load_run(run_dir), load_run(tiny_dir)


def _error_line(argv, capsys):
    try:
        code = run_main(predict_main, argv, prog=PROG, flags=FLAGS)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{PROG}: error:") and "Traceback" not in err[0], err
    return err[0]


# ------------------------------------------------------------------ the run's record


def test_the_run_records_its_window_recipe(world):
    _, _, _, run, tiny = world
    recipe = run.window_recipe
    assert (recipe.window, recipe.frames, recipe.frame_width, recipe.channels) == (WINDOW, FRAMES, 4, CHANNELS)
    assert recipe.step == 8 and recipe.overlap == OVERLAP
    assert run.domain["recipe"]["window"] == WINDOW  # in config.json, not read from the domain file
    assert run.signature()["window_recipe"]["description"].startswith("windows of 16 rows every 8")
    assert tiny.window_recipe is None


# ------------------------------------------------------------------ what is predicted


def test_predictions_on_a_domain_split_are_evaluates(world):
    _, _, domain, run, _ = world
    predictions = predict_samples(run, open_samples(domain, run, split="test"), batch_size=5)
    y_true, y_pred, probabilities = predict_split(run.model, domain, "test")
    np.testing.assert_array_equal(predictions.predicted, y_pred)
    np.testing.assert_allclose(predictions.probabilities, probabilities, atol=1e-6)
    assert list(predictions.columns["label"]) == [run.class_names[i] for i in y_true]
    ids = read_ids(domain, "test")
    np.testing.assert_array_equal(predictions.columns["start"], ids["start"])
    np.testing.assert_array_equal(predictions.columns["recording"], ids["recording"])


def test_a_csv_is_cut_as_the_domain_was(world):
    _, table, domain, run, _ = world
    from_csv = predict_samples(run, open_samples(table, run))
    from_file = predict_samples(run, open_samples(domain, run, split="test"))
    # The domain's test split holds some recordings of the CSV; find each of its windows among the CSV's.
    index = {(r, s): i for i, (r, s) in enumerate(zip(from_csv.columns["recording"], from_csv.columns["start"]))}
    rows = [index[(r, s)] for r, s in zip(from_file.columns["recording"], from_file.columns["start"])]
    np.testing.assert_allclose(from_csv.probabilities[rows], from_file.probabilities, atol=1e-6)
    assert list(from_csv.columns["label"][rows]) == list(from_file.columns["label"])
    assert set(from_csv.columns["group"]) == {f"s{g}" for g in range(12)}


def test_an_unlabelled_file_predicts_as_its_csv(world, tmp_path):
    from data_prep.__main__ import main as data_prep_main

    _, _, _, run, _ = world
    table = write_long_csv(tmp_path / "new.csv", groups=2, seed=5, labelled=False)
    assert data_prep_main(["csv", "--input", str(table), "--domain", "new", "--out", str(tmp_path), "--unlabelled",
                           "--window", str(WINDOW), "--frames", str(FRAMES), "--overlap", str(OVERLAP),
                           "--quiet"]) == 0
    from_file = predict_samples(run, open_samples(tmp_path / "new.h5", run))
    from_csv = predict_samples(run, open_samples(table, run))
    assert "label" not in from_file.columns and "label" not in from_csv.columns
    np.testing.assert_allclose(from_file.probabilities, from_csv.probabilities, atol=1e-6)
    np.testing.assert_array_equal(from_file.columns["start"], from_csv.columns["start"])


def test_by_recording_averages_each_recordings_windows(world):
    _, table, _, run, _ = world
    predictions = predict_samples(run, open_samples(table, run))
    by_recording = predictions.by_recording()
    recordings = predictions.columns["recording"]
    assert list(by_recording.columns["recording"]) == list(dict.fromkeys(recordings))
    for row, recording in enumerate(by_recording.columns["recording"]):
        mine = recordings == recording
        np.testing.assert_allclose(by_recording.probabilities[row], predictions.probabilities[mine].mean(axis=0),
                                   rtol=1e-5)
        assert by_recording.columns["windows"][row] == mine.sum()
    assert list(by_recording.columns) == ["recording", "group", "label", "windows"]


def test_npz_input_with_and_without_ids(world, tmp_path):
    _, _, domain, run, _ = world
    from convlstm_tl.data.reader import read_split

    x, _ = read_split(domain, "test")
    np.savez(tmp_path / "x.npz", x=x.astype("float64"), recording=np.arange(len(x)) // 2)
    predictions = predict_samples(run, open_samples(tmp_path / "x.npz", run))
    np.testing.assert_allclose(predictions.probabilities, run.model.predict_on_batch(x), atol=1e-6)
    assert len(predictions.by_recording()) == (len(x) + 1) // 2
    np.savez(tmp_path / "bare.npz", x=x)
    with pytest.raises(UserError, match="needs recording"):
        predict_samples(run, open_samples(tmp_path / "bare.npz", run)).by_recording()


# ------------------------------------------------------------------ the command line


def test_cli_writes_a_csv_per_sample_and_per_recording(world, tmp_path, capsys):
    root, table, _, run, _ = world
    out = tmp_path / "p.csv"
    base = ["--run", run.name, "--runs-dir", str(root / "runs"), "--input", str(table), "--quiet"]
    assert predict_main([*base, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["sample", "group", "recording", "start", "label", "predicted",
                             *(f"p_{name}" for name in run.class_names)]
    probabilities = np.array([[float(row[f"p_{name}"]) for name in run.class_names] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [row["predicted"] for row in rows] == [run.class_names[i] for i in probabilities.argmax(axis=1)]
    assert predict_main([*base, "--aggregate", "recording"]) == 0  # to stdout
    per_recording = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(per_recording) == 12 * len(LABELS) and per_recording[0]["windows"] == "4"


def test_cli_keeps_an_existing_output(world, tmp_path, capsys):
    root, table, _, run, _ = world
    base = ["--run", run.name, "--runs-dir", str(root / "runs"), "--input", str(table), "--quiet"]
    out = tmp_path / "mine.csv"
    out.write_text("keep me")
    line = _error_line([*base, "--out", str(out)], capsys)
    assert "exists; choose another name or pass --overwrite" in line and out.read_text() == "keep me"
    # --overwrite replaces a predictions file only.
    line = _error_line([*base, "--out", str(out), "--overwrite"], capsys)
    assert "is not a predictions file" in line and out.read_text() == "keep me"
    ours = tmp_path / "p.csv"
    assert predict_main([*base, "--out", str(ours)]) == 0
    assert predict_main([*base, "--out", str(ours), "--overwrite", "--aggregate", "recording"]) == 0
    assert "windows" in ours.read_text().splitlines()[0]
    link = tmp_path / "link.csv"
    link.symlink_to(ours)
    assert "is a symbolic link" in _error_line([*base, "--out", str(link), "--overwrite"], capsys)
    assert "is a folder" in _error_line([*base, "--out", str(tmp_path / "new") + "/"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "mine.csv", "p.csv"]


def test_cli_refuses_options_that_do_not_apply(world, tmp_path, capsys):
    root, table, domain, run, _ = world
    base = ["--run", run.name, "--runs-dir", str(root / "runs")]
    line = _error_line([*base, "--input", str(table), "--split", "val"], capsys)
    assert "split applies to domain files only" in line and "(option --split)" in line
    line = _error_line([*base, "--input", str(domain), "--group-column", "subject"], capsys)
    assert "group column applies to CSV input only" in line
    line = _error_line([*base, "--input", str(table), "--label-column", "activity"], capsys)
    assert "has no label column 'activity'" in line


def test_csv_quirks_users_have(world, tmp_path, capsys):
    """Excel's byte-order mark, tab-separated files, and values float32 cannot hold."""
    root, table, _, run, _ = world
    expected = predict_samples(run, open_samples(table, run)).probabilities
    text = table.read_text()
    bom = tmp_path / "excel.csv"
    bom.write_text("\ufeff" + text, encoding="utf-8")
    np.testing.assert_allclose(predict_samples(run, open_samples(bom, run)).probabilities, expected, atol=1e-6)
    tsv = tmp_path / "table.tsv"
    tsv.write_text(text.replace(",", "\t"))
    np.testing.assert_allclose(predict_samples(run, open_samples(tsv, run)).probabilities, expected, atol=1e-6)
    lines = text.splitlines()
    fields = lines[5].split(",")
    fields[2] = "1e39"
    huge = tmp_path / "huge.csv"
    huge.write_text("\n".join([*lines[:5], ",".join(fields), *lines[6:]]) + "\n")
    line = _error_line(["--run", run.name, "--runs-dir", str(root / "runs"), "--input", str(huge)], capsys)
    assert "line 6: column 'ax' is 1e39, beyond the float32 range" in line
    np.savez(tmp_path / "huge.npz", x=np.full((2, *run.frame_shape), 1e39))
    line = _error_line(["--run", run.name, "--runs-dir", str(root / "runs"), "--input", str(tmp_path / "huge.npz")],
                       capsys)
    assert "beyond the float32 range" in line
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, *run.frame_shape), "float32"))
    line = _error_line(["--run", run.name, "--runs-dir", str(root / "runs"), "--input", str(tmp_path / "empty.npz")],
                       capsys)
    assert "holds no samples" in line


def test_short_recordings_are_named(world, tmp_path, caplog):
    _, table, _, run, _ = world
    lines = table.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join([*lines[:41], "lonely,walk,0.1,0.2"]) + "\n")
    with caplog.at_level("WARNING"):
        samples = open_samples(short, run)
    assert samples.count > 0
    assert "1 recording shorter than a window (16 rows) gives no prediction (group lonely)" in caplog.text


def _bad_npz(tmp_path, run, what):
    shape = (3, *run.frame_shape)
    x = {"shape": np.zeros((3, 4, 1, 5, 2), "float32"), "rank": np.zeros(shape[1:], "float32"),
         "dtype": np.full(shape, "a"), "nan": np.full(shape, np.nan, "float32")}[what]
    np.savez(tmp_path / f"{what}.npz", x=x)
    return tmp_path / f"{what}.npz"


@pytest.mark.parametrize("what, expected", [
    ("shape", "takes samples of shape (T, H, W, C) = (4, 1, 4, 2); x of"),
    ("rank", "must have rank 5 (N, T, H, W, C)"),
    ("dtype", "must hold numbers (float32 frames)"),
    ("nan", "has NaN or inf (first at sample 0)"),
])
def test_cli_refuses_samples_that_do_not_fit(world, tmp_path, capsys, what, expected):
    root, _, _, run, _ = world
    line = _error_line(["--run", run.name, "--runs-dir", str(root / "runs"), "--input",
                        str(_bad_npz(tmp_path, run, what))], capsys)
    assert expected in line


def test_cli_refuses_csvs_that_do_not_fit(world, tmp_path, capsys):
    root, _, _, run, tiny = world
    runs = ["--runs-dir", str(root / "runs")]
    other_channels = write_long_csv(tmp_path / "gyro.csv", groups=1, channels=("gx", "gy"))
    line = _error_line(["--run", run.name, *runs, "--input", str(other_channels)], capsys)
    assert "has no channel column 'ax': run Long takes the channels ax, ay" in line
    line = _error_line(["--run", tiny.name, *runs, "--input", str(other_channels)], capsys)
    assert "does not record how its domain was cut from recordings" in line
    short = tmp_path / "short.csv"
    short.write_text("group,ax,ay\ns1,0,0\ns1,1,1\n")
    line = _error_line(["--run", run.name, *runs, "--input", str(short)], capsys)
    assert "gives no window: run Long takes windows of 16 rows and the longest recording has 2" in line
    odd = tmp_path / "samples.parquet"
    odd.write_text("x")
    assert "cannot tell what the file holds" in _error_line(["--run", run.name, *runs, "--input", str(odd)], capsys)


def test_cli_refuses_a_domain_of_another_shape_and_a_missing_split(world, tmp_path, capsys):
    root, _, _, run, tiny = world
    runs = ["--runs-dir", str(root / "runs")]
    line = _error_line(["--run", run.name, *runs, "--input", tiny.domain["path"]], capsys)
    assert "takes samples of shape (T, H, W, C) = (4, 1, 4, 2)" in line and "holds (4, 1, 8, 2)" in line
    assert "cut recordings as its domain was: windows of 16 rows every 8" in line
    from data_prep.__main__ import main as data_prep_main

    table = write_long_csv(tmp_path / "new.csv", groups=1, labelled=False)
    data_prep_main(["csv", "--input", str(table), "--domain", "new", "--out", str(tmp_path), "--unlabelled",
                    "--window", str(WINDOW), "--frames", str(FRAMES), "--quiet"])
    line = _error_line(["--run", run.name, *runs, "--input", str(tmp_path / "new.h5"), "--split", "train"], capsys)
    assert "has no split 'train' (it has test)" in line


def test_training_refuses_an_unlabelled_file_in_one_line(world, tmp_path, capsys):
    from convlstm_tl.train import main as train_main
    from data_prep.__main__ import main as data_prep_main

    root, _, _, _, _ = world
    table = write_long_csv(tmp_path / "new.csv", groups=1, labelled=False)
    data_prep_main(["csv", "--input", str(table), "--domain", "new", "--out", str(tmp_path), "--unlabelled",
                    "--window", str(WINDOW), "--frames", str(FRAMES), "--quiet"])
    assert run_main(train_main, ["--source", "new", "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path / "r")],
                    prog="python -m convlstm_tl.train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no labels" in err[0], err
    assert not (tmp_path / "r" / "new").exists()


def test_a_pretraining_run_is_refused_in_one_line(world, tmp_path, capsys):
    import shutil

    root, table, _, run, _ = world
    pretrained = tmp_path / "Pre"
    shutil.copytree(run.path, pretrained)
    record = json.loads((pretrained / "config.json").read_text())
    record["kind"] = "pretrain"
    (pretrained / "config.json").write_text(json.dumps(record))
    line = _error_line(["--run", str(pretrained), "--input", str(table)], capsys)
    assert "is a pretraining run" in line and "needs a classifier" in line


def test_held_back_native_output_is_replayed_on_errors_only(capfd):
    import os

    from convlstm_tl.quiet import held_native_stderr

    with pytest.raises(ValueError):
        with held_native_stderr():
            os.write(2, b"native notice\n")
            raise ValueError("boom")
    assert "native notice" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        with held_native_stderr():
            os.write(2, b"native notice\n")
            raise KeyboardInterrupt
    assert "native notice" not in capfd.readouterr().err
