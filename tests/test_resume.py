"""Resuming interrupted runs: ``--resume`` ends as an uninterrupted run with the same seed.

Interruptions are real: a training process killed with SIGKILL, and in-process
Ctrl-C (a ``KeyboardInterrupt`` raised right after the checkpoint of a chosen
epoch is written, which is where a real Ctrl-C between epochs lands).
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.config import AugmentConfig, ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.errors import ConfigError, Interrupted, RunError
from convlstm_tl.runs.directory import CHECKPOINT_FILE, RUN_FILES
from convlstm_tl.training import checkpoint as checkpoint_module
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.training.source import train_source
from convlstm_tl.training.transfer import transfer

REPO_ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m convlstm_tl.train"
# Dropout, recurrent dropout and jitter make every RNG matter.
MODEL = ModelConfig(filters=(4,), head_units=8, head_dropout=0.25, block_dropout=0.2)
# Settings of the reference runs: (patience, lr); at lr 0.3 with patience 1 early stopping ends training
# after 5 of 6 epochs, so a resume from epoch 4 must restore its state (best loss, wait, best weights).
REFERENCES = ((0, 1e-2), (1, 0.3))
COMPARED = ("accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "per_class", "epochs_run")


def _source_config(domain, runs_dir, **overrides):
    values = dict(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(runs_dir), epochs=6,
                  batch_size=16, lr=1e-2, seed=0, patience=0, model=MODEL, augment=AugmentConfig(jitter=0.1))
    values.update(overrides)
    return TrainConfig(**values)


def _interrupt_after_save(monkeypatch, n):
    """Raise KeyboardInterrupt right after the ``n``-th checkpoint is written."""
    real_save = Checkpoint.save
    saves = []

    def save(self, *args):
        real_save(self, *args)
        saves.append(1)
        if len(saves) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save)
    return real_save


def _assert_same_run(first, second):
    assert second.history == first.history
    for key in COMPARED:
        assert second.metrics[key] == first.metrics[key], key
    assert second.metrics.get("refit") == first.metrics.get("refit")
    refit_files = ("refit_history.csv",) if "refit" in first.metrics else ()
    assert sorted(p.name for p in second.run_dir.iterdir()) == sorted((*RUN_FILES, *refit_files))
    for name in ("history.csv", *refit_files):
        assert (second.run_dir / name).read_text() == (first.run_dir / name).read_text()


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def uninterrupted(domain, tmp_path_factory):
    """Reference runs trained without interruption, by patience."""
    root = tmp_path_factory.mktemp("reference")
    return {(patience, lr): train_source(_source_config(domain, root / f"p{patience}-{lr}", patience=patience, lr=lr),
                                        verbose=0)
            for patience, lr in REFERENCES}


@pytest.mark.slow
@pytest.mark.parametrize("patience, lr, interrupt_after", [(0, 1e-2, 1), (0, 1e-2, 4), (1, 0.3, 4)])
def test_interrupted_source_run_resumes_to_the_same_result(domain, uninterrupted, tmp_path, monkeypatch,
                                                           patience, lr, interrupt_after):
    reference = uninterrupted[(patience, lr)]
    config = _source_config(domain, tmp_path / "runs", patience=patience, lr=lr)
    real_save = _interrupt_after_save(monkeypatch, interrupt_after)
    with pytest.raises(Interrupted, match="continue with --resume"):
        train_source(config, verbose=0)
    partial = tmp_path / "runs" / ".partial-Tiny"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".partial-Tiny"]
    saved = Checkpoint.open(partial)
    assert [record.epochs for record in saved.phases] == [interrupt_after]
    assert saved.phases[0].history["val_loss"] == reference.history["val_loss"][:interrupt_after]

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    resumed = train_source(config.__class__(**{**config.__dict__, "resume": True}), verbose=0)
    _assert_same_run(reference, resumed)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["Tiny"]


@pytest.mark.slow
@pytest.mark.parametrize("interrupt_after", [3, 6])  # after the validated fit; inside the refit
def test_interrupted_refit_resumes_to_the_same_result(domain, tmp_path, monkeypatch, interrupt_after):
    config = _source_config(domain, tmp_path / "a", patience=0, lr=1e-2, epochs=3, refit=True)
    reference = train_source(config, verbose=0)
    assert reference.metrics["refit"]["epochs"] == [reference.metrics["best_epoch"]]
    config = replace(config, runs_dir=str(tmp_path / "b"))
    real_save = _interrupt_after_save(monkeypatch, min(interrupt_after, 3 + reference.metrics["best_epoch"] - 1))
    with pytest.raises(Interrupted):
        train_source(config, verbose=0)
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    _assert_same_run(reference, train_source(replace(config, resume=True), verbose=0))


@pytest.mark.slow
@pytest.mark.parametrize("interrupt_after", [2, 3])  # member 1 done; one epoch into member 2
def test_interrupted_ensemble_resumes_to_the_same_result(domain, tmp_path, monkeypatch, interrupt_after):
    config = _source_config(domain, tmp_path / "a", patience=0, lr=1e-2, epochs=2, ensemble=2)
    reference = train_source(config, verbose=0)
    config = replace(config, runs_dir=str(tmp_path / "b"))
    real_save = _interrupt_after_save(monkeypatch, interrupt_after)
    with pytest.raises(Interrupted):
        train_source(config, verbose=0)
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    resumed = train_source(replace(config, resume=True), verbose=0)
    _assert_same_run(reference, resumed)
    assert resumed.metrics["ensemble"] == reference.metrics["ensemble"]


@pytest.mark.slow
def test_early_stopped_reference_did_stop(uninterrupted):
    # The patience=1 case above only tests the early-stopping state if it stopped early, after the interruption.
    assert 4 < uninterrupted[(1, 0.3)].metrics["epochs_run"] < 6


# ------------------------------------------------------------------ transfer


@pytest.fixture(scope="module")
def source_run(domain, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("source_runs")
    return train_source(_source_config(domain, runs_dir, epochs=2, augment=AugmentConfig()), verbose=0)


def _transfer_config(domain, source_run, runs_dir, strategy, **overrides):
    values = dict(target=domain.name, source_run=str(source_run.run_dir), strategy=strategy,
                  data_dir=str(domain.data_dir), runs_dir=str(runs_dir), epochs=5, head_epochs=2, batch_size=16,
                  lr=1e-2, patience=0, name="t")
    values.update(overrides)
    return TransferConfig(**values)


@pytest.mark.slow
@pytest.mark.parametrize("strategy, interrupt_after, phases_saved", [
    ("gradual", 2, [2]),  # end of the head-only phase, before the body thaws
    ("gradual", 4, [2, 2]),  # inside the second phase
    ("freeze", 2, [2]),  # the feature-cache path
])
def test_interrupted_transfer_resumes_to_the_same_result(domain, source_run, tmp_path, monkeypatch, strategy,
                                                         interrupt_after, phases_saved):
    reference = transfer(_transfer_config(domain, source_run, tmp_path / "a", strategy), verbose=0)
    real_save = _interrupt_after_save(monkeypatch, interrupt_after)
    with pytest.raises(Interrupted):
        transfer(_transfer_config(domain, source_run, tmp_path / "b", strategy), verbose=0)
    assert [r.epochs for r in Checkpoint.open(tmp_path / "b" / ".partial-t").phases] == phases_saved
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    resumed = transfer(_transfer_config(domain, source_run, tmp_path / "b", strategy, resume=True), verbose=0)
    _assert_same_run(reference, resumed)
    assert resumed.metrics["feature_cache"] == (strategy == "freeze")


@pytest.mark.slow
@pytest.mark.parametrize("strategy, options", [
    ("joint", {}),  # source batches beside the target's
    ("freeze", {"adapter": "channel", "adapter_init": "signs", "adapt": "coral"}),  # target frames, alignment
    ("finetune", {"adapt": "mmd", "target_fraction": 0.0}),  # no target label: the source's batches
])
def test_interrupted_paired_transfer_resumes_to_the_same_result(domain, source_run, tmp_path, monkeypatch, strategy,
                                                                options):
    reference = transfer(_transfer_config(domain, source_run, tmp_path / "a", strategy, **options), verbose=0)
    real_save = _interrupt_after_save(monkeypatch, 2)
    with pytest.raises(Interrupted):
        transfer(_transfer_config(domain, source_run, tmp_path / "b", strategy, **options), verbose=0)
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    resumed = transfer(_transfer_config(domain, source_run, tmp_path / "b", strategy, resume=True, **options),
                       verbose=0)
    assert resumed.history == reference.history
    for key in COMPARED:
        assert resumed.metrics[key] == reference.metrics[key], key
    for mine, theirs in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert ((resumed.run_dir / "adapter.json").is_file()) == ("adapter" in options)


# ---------------------------------------------------------- refusals, library


def test_resume_with_nothing_to_resume_is_a_run_error(domain, tmp_path):
    with pytest.raises(RunError, match="nothing to resume: no interrupted run Tiny"):
        train_source(_source_config(domain, tmp_path / "runs", resume=True), verbose=0)
    (tmp_path / "runs" / "Tiny").mkdir(parents=True)
    with pytest.raises(RunError, match="nothing to resume: run .*Tiny is finished"):
        train_source(_source_config(domain, tmp_path / "runs", resume=True), verbose=0)


def test_resume_and_overwrite_together_are_refused(domain, tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        _source_config(domain, tmp_path, resume=True, overwrite=True).validate()


@pytest.mark.slow
def test_changed_settings_are_refused_and_the_interrupted_run_is_kept(domain, tmp_path, monkeypatch):
    _interrupt_after_save(monkeypatch, 1)
    with pytest.raises(Interrupted):
        train_source(_source_config(domain, tmp_path / "runs"), verbose=0)
    monkeypatch.undo()
    with pytest.raises(RunError, match="an interrupted run Tiny is in .*set resume"):
        train_source(_source_config(domain, tmp_path / "runs"), verbose=0)
    with pytest.raises(RunError, match="lr was 0.01 and is now 0.1"):
        train_source(_source_config(domain, tmp_path / "runs", lr=0.1, resume=True), verbose=0)
    partial = tmp_path / "runs" / ".partial-Tiny"
    assert CHECKPOINT_FILE in [p.name for p in partial.iterdir()]
    # --overwrite starts the interrupted run again.
    result = train_source(_source_config(domain, tmp_path / "runs", epochs=1, overwrite=True), verbose=0)
    assert result.metrics["epochs_run"] == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["Tiny"]


def test_corrupt_checkpoint_is_a_run_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RunError, match="is unreadable"):
        Checkpoint.open(tmp_path)


# ------------------------------------------------------- SIGKILL, real process


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return [sys.executable, "-m", "convlstm_tl.train", *args], env


def _run(*args, cwd):
    command, env = _cli(*args, cwd=cwd)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _history(runs_dir):
    lines = (Path(runs_dir) / "Tiny" / "history.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")] for line in lines])


def _one_error_line(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{PROG}: error: ") and fragment in lines[0], lines[0]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(domain, tmp_path):
    flags = ["--source", "Tiny", "--data-dir", str(domain.data_dir), "--quiet", "--epochs", "8", "--patience", "0",
             "--batch-size", "8", "--lr", "0.01", "--filters", "4", "--head-units", "8", "--dropout", "0.2",
             "--augment-jitter", "0.1"]
    reference = _run(*flags, "--runs-dir", "a", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    command, env = _cli(*flags, "--runs-dir", "b", cwd=tmp_path)
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "b" / ".partial-Tiny"
    try:
        deadline = time.monotonic() + 120
        while not (partial / CHECKPOINT_FILE).exists() or Checkpoint.open(partial).epochs_done < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint of epoch 3"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # inside epoch 4: no handler runs, nothing is cleaned up
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    saved_epochs = Checkpoint.open(partial).epochs_done
    assert 3 <= saved_epochs < 8

    # Without --resume the interrupted run is protected; with it, training continues.
    _one_error_line(_run(*flags, "--runs-dir", "b", cwd=tmp_path), "set resume to continue it or overwrite to start again (options --resume, --overwrite)")
    resumed = _run(*flags, "--runs-dir", "b", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    first = json.loads((tmp_path / "a" / "Tiny" / "metrics.json").read_text())
    second = json.loads((tmp_path / "b" / "Tiny" / "metrics.json").read_text())
    for key in COMPARED:
        assert second[key] == first[key], key
    # Across a process restart the losses agree to float32 rounding, not bit
    # for bit (measured: one value in the 6th significant digit; an in-process
    # interrupt and resume above is bit-exact, as are two uninterrupted processes).
    np.testing.assert_allclose(_history(tmp_path / "b"), _history(tmp_path / "a"), rtol=1e-5)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["Tiny"]

    # A finished run has nothing to resume.
    _one_error_line(_run(*flags, "--runs-dir", "b", "--resume", cwd=tmp_path), "nothing to resume")
