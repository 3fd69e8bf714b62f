"""Scale-out: ``--distribute mirrored`` on two logical CPUs, ``multiworker`` with two local
processes, and concurrent trainings in one runs directory.

Each training runs in its own process: logical devices and the multi-worker
runtime must be set up before TensorFlow starts, which in the test process it
already has.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.distribute import is_chief, read_tf_config
from convlstm_tl.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--filters", "4", "--head-units", "8", "--quiet",
         "--patience", "0"]
# Runs convlstm_tl.cli.train's CLI after giving TensorFlow N logical CPU devices.
LAUNCHER = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[1]))
from convlstm_tl.cli import run_main
from convlstm_tl.cli.train import PROG, main
sys.exit(run_main(main, sys.argv[2:], prog=PROG))
"""


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("CONVLSTM_TL_DATA", None)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _train(cwd, *args, devices=None, env=None):
    """Start ``python -m convlstm_tl.train ARGS``; with ``devices``, on that many logical CPUs."""
    launch = ["-m", "convlstm_tl.train"] if devices is None else ["-c", LAUNCHER, str(devices)]
    return subprocess.Popen([sys.executable, *launch, *args], cwd=cwd, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=300):
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# ------------------------------------------------------------------ TF_CONFIG


def test_chief_is_the_chief_task_or_worker_0():
    two = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}
    assert is_chief("multiworker", {"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 0}})})
    assert not is_chief("multiworker", {"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 1}})})
    with_chief = {"cluster": {"chief": ["127.0.0.1:3"], "worker": ["127.0.0.1:1"]}}
    assert is_chief("multiworker", {"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})})
    assert not is_chief("multiworker",
                        {"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})})
    assert is_chief("mirrored", {}) and is_chief("none", {})


@pytest.mark.parametrize("text", ["", "{", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker",
                                                                                             "index": 3}})])
def test_bad_tf_config_is_a_config_error(text):
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        read_tf_config({"TF_CONFIG": text})


def test_multiworker_does_not_resume():
    from convlstm_tl.config import TrainConfig

    with pytest.raises(ConfigError, match="resume does not work with distribute multiworker"):
        TrainConfig(source="Tiny", distribute="multiworker", resume=True).validate()


# ------------------------------------------------------------------- mirrored


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_like_one_device(tmp_path):
    domain = write_tiny(tmp_path / "data")
    common = ["--source", "Tiny", "--data-dir", str(domain.data_dir), *FLAGS]
    single = _train(tmp_path, *common, "--runs-dir", "single", devices=2)
    code, _, err = _finish(single)
    assert code == 0, err
    mirrored = _train(tmp_path, *common, "--runs-dir", "mirrored", "--distribute", "mirrored", devices=2)
    code, _, err = _finish(mirrored)
    assert code == 0, err
    single_config = json.loads((tmp_path / "single" / "Tiny" / "config.json").read_text())
    mirrored_config = json.loads((tmp_path / "mirrored" / "Tiny" / "config.json").read_text())
    assert (single_config["replicas"], mirrored_config["replicas"]) == (1, 2)
    assert mirrored_config["n_params"] == single_config["n_params"]
    metrics = json.loads((tmp_path / "mirrored" / "Tiny" / "metrics.json").read_text())
    assert metrics["n_test"] == 12 and metrics["epochs_run"] == 2
    history = (tmp_path / "mirrored" / "Tiny" / "history.csv").read_text().splitlines()
    assert len(history) == 3
    # The same global batch split over two replicas follows the single-device
    # run closely (the gradient sum runs in another order, and BatchNorm sees
    # half batches, so not bit for bit).
    def losses(lines):
        header = lines[0].split(",")
        return [float(line.split(",")[header.index(key)]) for line in lines[1:] for key in ("loss", "val_loss")]

    single_losses = losses((tmp_path / "single" / "Tiny" / "history.csv").read_text().splitlines())
    assert np.allclose(losses(history), single_losses, rtol=0.15), (losses(history), single_losses)


# ---------------------------------------------------------------- multiworker


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_run(tmp_path):
    domain = write_tiny(tmp_path / "data")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        cwd = tmp_path / f"worker{index}"
        cwd.mkdir()
        processes.append(_train(cwd, "--source", "Tiny", "--data-dir", str(domain.data_dir), *FLAGS,
                                "--runs-dir", str(tmp_path / "runs"), "--distribute", "multiworker",
                                env=_env(TF_CONFIG=json.dumps(tf_config))))
    results = [_finish(process, timeout=120) for process in processes]
    for code, _, err in results:
        assert code == 0, err
    # Only the chief (worker 0) wrote the run; the other worker wrote nothing there.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["Tiny"]
    assert sorted(p.name for p in (tmp_path / "runs" / "Tiny").iterdir()) == sorted(
        ["config.json", "model.keras", "history.csv", "metrics.json", "report.txt", "confusion_matrix.png"])
    assert "test accuracy" in results[0][1] and "test accuracy" in results[1][1]
    saved = json.loads((tmp_path / "runs" / "Tiny" / "config.json").read_text())
    assert saved["replicas"] == 2 and saved["config"]["distribute"] == "multiworker"
    history = (tmp_path / "runs" / "Tiny" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    losses = [float(line.split(",")[header.index("loss")]) for line in history[1:]]
    assert len(losses) == 2 and losses[1] < losses[0], history  # it trains
    # Every test sample was scored, once.
    assert json.loads((tmp_path / "runs" / "Tiny" / "metrics.json").read_text())["n_test"] == 12


# ---------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_trainings_in_one_runs_dir_do_not_interfere(tmp_path):
    domain = write_tiny(tmp_path / "data")
    common = ["--source", "Tiny", "--data-dir", str(domain.data_dir), *FLAGS, "--runs-dir", "runs"]
    first = _train(tmp_path, *common, "--name", "one", "--seed", "1")
    second = _train(tmp_path, *common, "--name", "two", "--seed", "2")
    assert _finish(first)[0] == 0 and _finish(second)[0] == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one", "two"]
    for name, seed in (("one", 1), ("two", 2)):
        assert json.loads((tmp_path / "runs" / name / "config.json").read_text())["config"]["seed"] == seed
    # Each equals a run of the same seed trained alone.
    alone = _train(tmp_path, *common[:-1], "alone", "--name", "one", "--seed", "1")
    assert _finish(alone)[0] == 0
    assert ((tmp_path / "alone" / "one" / "history.csv").read_text()
            == (tmp_path / "runs" / "one" / "history.csv").read_text())
    # Reusing a name is refused without --overwrite.
    again = _train(tmp_path, *common, "--name", "one")
    code, _, err = _finish(again)
    assert code == 2 and len(err.splitlines()) == 1 and "already exists; set overwrite" in err and "(options --overwrite, --name)" in err
    replaced = _train(tmp_path, *common, "--name", "one", "--overwrite", "--epochs", "1")
    assert _finish(replaced)[0] == 0
    assert len((tmp_path / "runs" / "one" / "history.csv").read_text().splitlines()) == 2


def test_a_run_being_written_is_locked(tmp_path):
    from convlstm_tl.errors import RunError
    from convlstm_tl.runs.directory import RunDirectory, check_run_target

    with RunDirectory(tmp_path, "St"):
        with pytest.raises(RunError, match="being written by another process"):
            check_run_target(tmp_path, "St", resume=True)
        with pytest.raises(RunError, match="being written by another process"):
            RunDirectory(tmp_path, "St", overwrite=True)


@pytest.mark.parametrize("class_weight", [None, [0.5, 1.0, 2.0]])
def test_in_memory_pipeline_gives_the_sequences_batches_every_epoch(class_weight):
    """Cached features go to fit as a tf.data pipeline built once; it must follow the sequence's seeded order."""
    from convlstm_tl.data.sequence import ArraySequence
    from convlstm_tl.distribute import in_memory_input

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 3, 4)).astype("float32"), rng.integers(0, 3, 37)
    sequence = ArraySequence(x, y, batch_size=8, shuffle=True, seed=5, class_weight=class_weight)
    sequence.set_epoch(2)  # a resumed run starts mid-way
    pipeline = in_memory_input(sequence)
    assert int(pipeline.cardinality()) == len(sequence) == 5
    orders = []
    for _ in range(3):
        expected = [sequence[index] for index in range(len(sequence))]
        got = [tuple(part.numpy() for part in batch) for batch in pipeline]
        assert len(got) == len(expected)
        for mine, theirs in zip(got, expected):
            assert len(mine) == len(theirs) == (2 if class_weight is None else 3)
            for a, b in zip(mine, theirs):
                np.testing.assert_array_equal(a, b)
        orders.append(np.concatenate([batch[1] for batch in got]))
        sequence.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])  # a new order every epoch
