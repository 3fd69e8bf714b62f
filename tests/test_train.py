"""Tests of source training: ``convlstm_tl.training.source`` and ``python -m convlstm_tl.train``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, SPLIT_SIZES, write_tiny
from convlstm_tl.cli.train import build_config, parse_args
from convlstm_tl.config import ModelConfig, TrainConfig
from convlstm_tl.data.reader import read_split
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.data.stats import channel_stats
from convlstm_tl.errors import DomainFileError, RunError
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.jsonio import to_dict
from convlstm_tl.runs.directory import RUN_FILES
from convlstm_tl.training import source as source_module
from convlstm_tl.training.source import train_source

REPO_ROOT = Path(__file__).resolve().parents[1]
DESIGN_FILES = {"config.json", "model.keras", "history.csv", "metrics.json", "report.txt", "confusion_matrix.png"}
METRIC_KEYS = {"domain", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
               "confusion_matrix", "n_test", "train_seconds", "eval_seconds"}
PROG = "python -m convlstm_tl.train"
# A model small enough to train in a second or two on CPU.
TINY_MODEL = ModelConfig(filters=(4,), head_units=8, head_dropout=0.25)
TINY_FLAGS = ["--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--filters", "4", "--head-units", "8"]


def _config(domain, runs_dir, **overrides):
    values = dict(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(runs_dir), epochs=2,
                  batch_size=16, lr=1e-2, seed=0, model=TINY_MODEL)
    values.update(overrides)
    return TrainConfig(**values)


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


# ------------------------------------------------------------------ library


@pytest.fixture(scope="module")
def trained(shared_domain, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs_a")
    config = _config(shared_domain, runs_dir)
    return config, train_source(config, verbose=0)


@pytest.mark.slow
def test_run_dir_holds_exactly_the_design_files(trained):
    config, result = trained
    assert result.run_dir == Path(config.runs_dir) / "Tiny"
    assert set(RUN_FILES) == DESIGN_FILES
    assert set(_entries(result.run_dir)) == DESIGN_FILES
    # Nothing else (no temporary folder) in the runs dir.
    assert _entries(config.runs_dir) == ["Tiny"]
    assert (result.run_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (result.run_dir / "report.txt").read_text()
    for name in CLASS_NAMES:
        assert name in report


@pytest.mark.slow
def test_metrics_json(trained, shared_domain):
    _, result = trained
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics == result.metrics
    assert metrics["domain"] == "Tiny"
    assert metrics["n_test"] == SPLIT_SIZES["test"]
    assert list(metrics["per_class"]) == list(CLASS_NAMES)
    assert np.array(metrics["confusion_matrix"]).sum() == SPLIT_SIZES["test"]
    assert metrics["train_seconds"] > 0 and metrics["eval_seconds"] > 0
    # The synthetic signal is easy: two epochs beat chance (1/3).
    assert metrics["accuracy"] > 0.5


@pytest.mark.slow
def test_config_json_records_settings_seed_and_versions(trained, shared_domain):
    config, result = trained
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["kind"] == "source"
    assert saved["config"] == to_dict(config)
    assert saved["config"]["seed"] == 0
    assert saved["config"]["model"]["filters"] == [4]
    for package in ("keras", "backend", "numpy", "h5py", "scikit-learn"):
        assert saved["versions"][package]
    assert saved["versions"]["keras"] == keras.__version__
    assert saved["domain"]["class_names"] == list(CLASS_NAMES)
    assert saved["domain"]["frame_shape"] == list(FRAMES_1D)
    assert saved["domain"]["split_sizes"] == SPLIT_SIZES
    mean, variance = channel_stats(shared_domain.path, "train")
    np.testing.assert_allclose(saved["normalization"]["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(saved["normalization"]["variance"], variance, rtol=1e-6)
    assert saved["n_params"] == result.model.count_params()


@pytest.mark.slow
def test_history_csv_matches_history(trained):
    _, result = trained
    with open(result.run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    for name, values in result.history.items():
        assert [float(row[name]) for row in rows] == pytest.approx(values, rel=1e-5)
    assert result.metrics["epochs_run"] == 2


@pytest.mark.slow
def test_saved_model_predicts_like_returned_model_and_gives_saved_metrics(trained, shared_domain):
    _, result = trained
    reloaded = keras.saving.load_model(result.run_dir / "model.keras")
    x, y = read_split(shared_domain.path, "test")
    expected = result.model.predict(x, verbose=0)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=0, atol=1e-6)
    # metrics.json scores exactly the saved model on the test split.
    rescored = classification_metrics(y, expected.argmax(axis=1), CLASS_NAMES, domain="Tiny")
    for key in ("accuracy", "macro_f1", "confusion_matrix", "per_class"):
        assert rescored[key] == result.metrics[key]


@pytest.mark.slow
def test_returned_model_has_the_best_validation_loss(trained, shared_domain):
    _, result = trained
    val = DomainSequence(shared_domain.path, "val", batch_size=16)
    loss = result.model.evaluate(val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(min(result.history["val_loss"]), rel=1e-4)


@pytest.mark.slow
def test_same_seed_gives_same_results(trained, shared_domain, tmp_path):
    config, first = trained
    second = train_source(_config(shared_domain, tmp_path / "runs_b"), verbose=0)
    saved_first = json.loads((first.run_dir / "metrics.json").read_text())
    saved_second = json.loads((second.run_dir / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class"):
        assert saved_first[key] == saved_second[key]
    assert first.history["loss"] == second.history["loss"]
    assert first.history["val_loss"] == second.history["val_loss"]
    assert (first.run_dir / "history.csv").read_text() == (second.run_dir / "history.csv").read_text()


@pytest.mark.slow
def test_other_seed_gives_other_training(trained, shared_domain, tmp_path):
    _, first = trained
    other = train_source(_config(shared_domain, tmp_path / "runs_c", seed=1), verbose=0)
    assert other.history["loss"] != first.history["loss"]


@pytest.mark.slow
def test_train_2d_frames(tiny_domain_2d, tmp_path):
    result = train_source(_config(tiny_domain_2d, tmp_path / "runs", epochs=1), verbose=0)
    assert set(_entries(result.run_dir)) == DESIGN_FILES
    assert result.model.get_layer("block_1").get_layer("convlstm").kernel_size == (3, 3)
    assert result.metrics["n_test"] == SPLIT_SIZES["test"]


def test_train_source_refuses_existing_run_before_training(shared_domain, tmp_path, monkeypatch):
    (tmp_path / "runs" / "Tiny").mkdir(parents=True)
    monkeypatch.setattr(source_module, "build_classifier", _must_not_be_called)
    with pytest.raises(RunError, match="already exists"):
        train_source(_config(shared_domain, tmp_path / "runs"), verbose=0)
    assert _entries(tmp_path / "runs" / "Tiny") == []


def test_train_source_missing_domain(tmp_path):
    config = TrainConfig(source="Nope", data_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"))
    with pytest.raises(DomainFileError, match="Nope.h5 not found"):
        train_source(config, verbose=0)
    assert not (tmp_path / "runs").exists() or _entries(tmp_path / "runs") == []


def test_failure_during_training_leaves_no_run(shared_domain, tmp_path, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(source_module, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="out of memory"):
        train_source(_config(shared_domain, tmp_path / "runs"), verbose=0)
    assert _entries(tmp_path / "runs") == []


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("training started although the run exists")


# ------------------------------------------------------- flags and --config


def test_flags_override_config_file(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"source": "St", "epochs": 5, "seed": 3, "batch_size": 16,
                                       "model": {"filters": [4, 4], "kernel_size": 5}}))
    config = build_config(parse_args(["--config", str(config_file), "--epochs", "2", "--head-units", "8"]))
    assert (config.source, config.epochs, config.seed, config.batch_size) == ("St", 2, 3, 16)
    assert config.model.filters == (4, 4) and config.model.kernel_size == 5 and config.model.head_units == 8
    config = build_config(parse_args(["--config", str(config_file), "--blocks", "3"]))
    assert config.model.filters == (4, 4, 4)
    config = build_config(parse_args(["--source", "St", "--filters", "8,2", "--dropout", "0.1"]))
    assert config.model.filters == (8, 2) and config.model.block_dropout == 0.1
    assert build_config(parse_args(["--source", "St"])) == TrainConfig(source="St")


# ---------------------------------------------------------------------- CLI


def _run_cli(*args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("CONVLSTM_TL_DATA", None)
    return subprocess.run([sys.executable, "-m", "convlstm_tl.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    assert lines[0].startswith(f"{PROG}: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def cli_run(shared_domain, tmp_path_factory):
    """One successful CLI run, with a --config file that the flags partly override."""
    cwd = tmp_path_factory.mktemp("cli")
    (cwd / "settings.json").write_text(json.dumps({
        "epochs": 7, "seed": 3, "batch_size": 16, "lr": 0.01, "name": "from-file",
        "model": {"filters": [4], "head_units": 8, "kernel_size": 5},
    }))
    result = _run_cli("--source", "Tiny", "--data-dir", str(shared_domain.data_dir), "--config", "settings.json",
                      "--epochs", "2", "--seed", "11", "--quiet", cwd=cwd)
    return cwd, result


@pytest.mark.slow
def test_cli_trains_and_writes_the_run(cli_run):
    cwd, result = cli_run
    assert result.returncode == 0, result.stderr
    # --quiet: the backend's start-up notices are silenced; stderr holds at most the one line saying that
    # the 2-epoch budget ended while validation was still improving.
    assert len(result.stderr.splitlines()) <= 1 and "Traceback" not in result.stderr
    assert all("still improving" in line for line in result.stderr.splitlines())
    assert "test accuracy" in result.stdout
    # Relative --runs-dir default: ./runs of the working directory.
    assert _entries(cwd / "runs") == ["from-file"]
    assert set(_entries(cwd / "runs" / "from-file")) == DESIGN_FILES
    assert json.loads((cwd / "runs" / "from-file" / "metrics.json").read_text())["n_test"] == SPLIT_SIZES["test"]


@pytest.mark.slow
def test_cli_applies_config_file_and_flags_override_it(cli_run):
    cwd, result = cli_run
    assert result.returncode == 0, result.stderr
    saved = json.loads((cwd / "runs" / "from-file" / "config.json").read_text())["config"]
    assert saved["epochs"] == 2 and saved["seed"] == 11  # flags win
    assert saved["batch_size"] == 16 and saved["lr"] == 0.01 and saved["name"] == "from-file"  # from the file
    assert saved["model"]["filters"] == [4] and saved["model"]["kernel_size"] == 5
    assert saved["model"]["head_units"] == 8
    assert saved["patience"] == TrainConfig().patience  # default
    with open(cwd / "runs" / "from-file" / "history.csv") as f:
        assert len(f.read().splitlines()) == 1 + 2  # header + the 2 epochs of the flag


def _corrupt(data_dir):
    data_dir.mkdir()
    (data_dir / "Tiny.h5").write_bytes(np.random.default_rng(0).bytes(2048))


def _with_nan(data_dir):
    domain = write_tiny(data_dir)
    with h5py.File(domain.path, "r+") as f:
        f["val/x"][4, 0, 0, 0, 0] = np.nan


@pytest.mark.parametrize("prepare, args, fragments", [
    (None, ["--source", "Tiny"], ["data/Tiny.h5 not found", "data_prep"]),
    (None, ["--source", "Tiny", "--data-dir", "elsewhere"], ["elsewhere/Tiny.h5", "data_prep"]),
    (_corrupt, ["--source", "Tiny"], ["data/Tiny.h5", "not a readable HDF5 file"]),
    (_with_nan, ["--source", "Tiny"], ["NaN or inf", "'val'", "sample 4"]),
    (None, ["--source", "Tiny", "--bogus"], ["unrecognized arguments: --bogus"]),
    (None, ["--source", "Tiny", "--epochs", "-1"], ["epochs must lie in [1, 100000]", "Received: epochs=-1"]),
    (None, ["--source", "Tiny", "--lr", "nan"], ["lr must lie in (0.0, inf)", "Received: lr=nan"]),
    (None, ["--source", "Tiny", "--seed", "99999999999"], ["seed must lie in [0, 4294967295]"]),
    (None, ["--source", "Tiny", "--name", "x" * 300], ["run name must be at most 100 characters"]),
    (None, ["--source", "Tiny", "--epochs", "two"], ["--epochs", "'two'"]),
    (None, ["--source", "Tiny", "--dropout", "1.0"], ["block_dropout"]),
    (None, ["--source", "Tiny", "--filters", "4,x"], ["--filters"]),
    (None, ["--epochs", "2"], ["--source"]),
    (None, ["--source", "Tiny", "--config", "missing.json"], ["config file missing.json not found"]),
])
def test_cli_user_errors_are_one_line_exit_2(tmp_path, prepare, args, fragments):
    if prepare is not None:
        prepare(tmp_path / "data")
    result = _run_cli(*args, cwd=tmp_path)
    _assert_user_error(result, *fragments)
    # Nothing written for a run that failed.
    assert _entries(tmp_path / "runs") == []


@pytest.mark.parametrize("content, fragments", [
    ({"source": "Tiny", "epoch": 2}, ["bad.json has unknown keys ['epoch']"]),
    ({"source": "Tiny", "model": {"filters": ["4"]}}, ["bad.json.model.filters must be a list of ints"]),
    ("{not json", ["bad.json is not valid JSON"]),
])
def test_cli_bad_config_file(tmp_path, content, fragments):
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "bad.json").write_text(text)
    result = _run_cli("--config", "bad.json", cwd=tmp_path)
    _assert_user_error(result, *fragments)
    assert _entries(tmp_path / "runs") == []


def test_cli_existing_run_needs_overwrite(shared_domain, tmp_path):
    (tmp_path / "runs" / "Tiny").mkdir(parents=True)
    (tmp_path / "runs" / "Tiny" / "keep.txt").write_text("old")
    result = _run_cli("--source", "Tiny", "--data-dir", str(shared_domain.data_dir), *TINY_FLAGS, cwd=tmp_path)
    _assert_user_error(result, "runs/Tiny already exists", "--overwrite")
    assert _entries(tmp_path / "runs") == ["Tiny"]
    assert _entries(tmp_path / "runs" / "Tiny") == ["keep.txt"]


@pytest.mark.slow
def test_cli_interrupted_training_keeps_a_resumable_run(shared_domain, tmp_path):
    """Ctrl-C during training: exit 130, one line, no run, and a .partial folder for --resume."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    args = ["--source", "Tiny", "--data-dir", str(shared_domain.data_dir), "--quiet", *TINY_FLAGS,
            "--epochs", "100000", "--patience", "0"]
    process = subprocess.Popen([sys.executable, "-m", "convlstm_tl.train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "runs" / ".partial-Tiny" / ".checkpoint.npz"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training never saved a checkpoint"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [f"{PROG}: interrupted; the last finished epoch is saved in"
                                   f" runs/.partial-Tiny, continue with --resume"]
    assert _entries(tmp_path / "runs") == [".partial-Tiny"]
    assert ".checkpoint.npz" in _entries(tmp_path / "runs" / ".partial-Tiny")
