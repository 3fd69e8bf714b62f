"""A grid goes on past a cell that fails while running, and keeps its state when interrupted or sent SIGTERM."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import convlstm_tl.training.source
import convlstm_tl.training.transfer
from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.errors import DomainFileError
from convlstm_tl.runs.directory import partial_path
from convlstm_tl.training.checkpoint import Checkpoint
from experiments.__main__ import PROG, main
from experiments.grid import expand_grid, load_grid

TINY_SOURCE = {"source": "Tiny", "epochs": 1, "model": {"filters": [4, 4], "head_units": 8}}
ROOT = Path(__file__).resolve().parents[1]


def _tiny_grid(tmp_path, seeds, axes, base=None):
    data = tmp_path / "data"
    write_tiny(data)
    write_tiny(data, name="Target", seed=1)
    grid_file = tmp_path / "tiny.json"
    grid_file.write_text(json.dumps({"name": "tiny", "source": {"config": TINY_SOURCE},
                                     "base": {"target": "Target", "epochs": 1, **(base or {})}, "seeds": seeds,
                                     "axes": axes}))
    runs = tmp_path / "runs"
    return grid_file, ["run", str(grid_file), "--runs-dir", str(runs), "--data-dir", str(data), "--quiet"], runs


def _results(runs):
    with open(runs / "tiny" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_failed_cells_are_recorded_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    _, argv, runs = _tiny_grid(tmp_path, [0, 1], {"strategy": ["freeze", "scratch"]})
    real_train, real_transfer = convlstm_tl.training.source.train_source, convlstm_tl.training.transfer.transfer
    error = {"kind": RuntimeError}

    def train_source(config, **kwargs):
        if config.name.startswith("source-") and config.seed == 1:
            raise DomainFileError("Tiny.h5 was replaced while training; rebuild it")
        return real_train(config, **kwargs)

    def transfer(config, **kwargs):
        if config.strategy == "scratch":
            raise error["kind"]("scratch broke")
        return real_transfer(config, **kwargs)

    monkeypatch.setattr(convlstm_tl.training.source, "train_source", train_source)
    monkeypatch.setattr(convlstm_tl.training.transfer, "transfer", transfer)

    # A fault that is not a user error: exit 1, the last stderr line names the failed runs.
    assert run_main(main, argv, prog=PROG) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"{PROG}: error: 2 run(s) of the grid failed (source-Tiny-s1-")
    assert ", scratch-s0-" in err[-1] and "the first: Tiny.h5 was replaced while training; rebuild it" in err[-1]
    assert "2 cells skipped for a failed source run" in err[-1] and "run `python -m experiments run" in err[-1]
    rows = _results(runs)
    assert list(rows[0])[-2:] == ["status", "reason"] and list(rows[0])[:3] == ["study", "strategy", "seed"]
    status = {(row["strategy"], row["seed"]): (row["status"], row["reason"]) for row in rows}
    assert status[("freeze", "0")] == ("ok", "")
    assert status[("scratch", "0")] == ("failed", "RuntimeError: scratch broke")
    for strategy in ("freeze", "scratch"):
        assert status[(strategy, "1")][0] == "skipped"
        assert "failed: Tiny.h5 was replaced while training" in status[(strategy, "1")][1]
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 1 and float(ok[0]["accuracy"]) >= 0
    # The summary is written, over the cells that finished.
    summary = (runs / "tiny" / "summary.md").read_text()
    assert "| freeze | 1 |" in summary and "| scratch |" not in summary

    # Every failure a user error: exit 2 and exactly one line; the finished cell is not trained again.
    error["kind"] = DomainFileError
    assert run_main(main, argv, prog=PROG) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and "scratch-s0-" in lines[0], captured.err
    assert [row["status"] for row in _results(runs)] == ["ok", "skipped", "failed", "skipped"]

    # Fixed: the next run retries the failed and skipped cells and finishes the grid.
    monkeypatch.setattr(convlstm_tl.training.source, "train_source", real_train)
    monkeypatch.setattr(convlstm_tl.training.transfer, "transfer", real_transfer)
    assert run_main(main, argv, prog=PROG) == 0
    rows = _results(runs)
    assert [row["status"] for row in rows] == ["ok"] * 4 and all(row["accuracy"] for row in rows)
    assert "3 runs trained, 1 finished before" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_in_a_cell_says_how_to_resume(tmp_path, monkeypatch, capsys):
    grid_file, argv, runs = _tiny_grid(tmp_path, [0], {"strategy": ["freeze", "scratch"]})
    real_transfer = convlstm_tl.training.transfer.transfer

    def transfer(config, **kwargs):
        if config.strategy == "scratch":
            raise KeyboardInterrupt
        return real_transfer(config, **kwargs)

    monkeypatch.setattr(convlstm_tl.training.transfer, "transfer", transfer)
    assert run_main(main, argv, prog=PROG) == 130
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "interrupted while running scratch-s0-" in lines[0] and f"python -m experiments run {grid_file}" in lines[0]
    # results.csv holds the cell finished before the interrupt, whole.
    assert [(row["strategy"], row["status"]) for row in _results(runs)] == [("freeze", "ok")]
    monkeypatch.setattr(convlstm_tl.training.transfer, "transfer", real_transfer)
    assert run_main(main, argv, prog=PROG) == 0
    assert [row["status"] for row in _results(runs)] == ["ok", "ok"]


@pytest.mark.slow
def test_sigterm_keeps_the_running_cell_and_a_rerun_completes(tmp_path):
    """A real ``python -m experiments run`` sent SIGTERM once the first run folder exists."""
    grid_file, argv, runs = _tiny_grid(tmp_path, [0], {"strategy": ["finetune"]},
                                       base={"epochs": 30, "patience": 0})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    cell_runs = runs / "tiny" / "runs"
    checkpoint = Checkpoint(partial_path(cell_runs, expand_grid(load_grid(grid_file))[0].run_name)).path
    process = subprocess.Popen([sys.executable, "-m", "experiments", *argv], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # The cell (after its source run) has saved its first epoch.
        while not checkpoint.is_file():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # 143 once the command line maps SIGTERM to Ctrl-C; -15 where the signal still ends it outright.
    assert process.returncode in (143, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    if process.returncode == 143:
        # Besides the warning of a source run whose 1-epoch budget ended while it still improved.
        lines = [line for line in err.strip().splitlines() if "still improving" not in line]
        assert len(lines) == 1 and "python -m experiments run" in lines[0], err
        # The running cell's partial run, with its saved epochs, is kept for resume.
        assert "interrupted while running" in lines[0] and checkpoint.is_file()
    if (runs / "tiny" / "results.csv").exists():
        _results(runs)  # whole, readable CSV

    done = subprocess.run([sys.executable, "-m", "experiments", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = _results(runs)
    assert [row["status"] for row in rows] == ["ok"] and int(rows[0]["epochs_run"]) == 30


def test_a_full_disk_in_a_cell_counts_as_a_user_error_and_other_faults_as_bugs():
    import errno

    from experiments.runner import _attempt

    def fails(error):
        def work():
            raise error
        return work

    failed = {}
    assert not _attempt("a", fails(OSError(errno.ENOSPC, "No space left on device", "/runs/x")), failed)
    assert not _attempt("b", fails(OSError(errno.EIO, "Input/output error")), failed)
    assert not _attempt("c", fails(DomainFileError("bad\nfile")), failed)
    assert failed["a"] == ("user", "No space left on device (/runs/x); free some space or choose a folder you can write")
    assert failed["b"][0] == "bug" and failed["c"] == ("user", "bad file")
