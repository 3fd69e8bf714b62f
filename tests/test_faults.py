"""Faults: nothing the user owns is lost, nothing is left half-written.

- a failure once a checkpoint exists keeps it, and the error says how to continue;
- publishing a run survives a crash at every step (simulated in-process, and
  a real SIGKILL at the pauses of ``CONVLSTM_TL_TEST_PAUSE_AT``), and the next
  command that looks at the run finishes what the crash left;
- SIGTERM is handled as Ctrl-C (exit 143, resumable state kept);
- ``evaluate --out`` never deletes a file it did not write.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from conftest import write_tiny
from convlstm_tl import files as files_module
from convlstm_tl.cli import EXIT_SIGTERM, evaluate, run_main, train
from convlstm_tl.errors import DomainFileError, RunError
from convlstm_tl.evaluation.report import check_output_dir, file_stem
from convlstm_tl.files import replace_folder
from convlstm_tl.runs.directory import (
    CHECKPOINT_FILE, COMPLETE_MARKER, PAUSE_ENV, RUN_FILES, RunDirectory, find_run, recover_run,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "2", "--batch-size", "16", "--filters", "4", "--head-units", "8", "--quiet"]


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _with_checkpoint(run):
    (run.path / "config.json").write_text("{}")
    (run.path / CHECKPOINT_FILE).write_bytes(b"state")


# ------------------------------------------------------------ failures keep the checkpoint


def test_a_bug_after_the_first_checkpoint_keeps_the_partial_run(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        with RunDirectory(tmp_path, "St") as run:
            _with_checkpoint(run)
            raise ValueError("boom")
    assert _entries(tmp_path) == [".partial-St"]
    assert (tmp_path / ".partial-St" / CHECKPOINT_FILE).read_bytes() == b"state"


def test_a_user_error_after_the_first_checkpoint_says_how_to_continue(tmp_path):
    with pytest.raises(DomainFileError) as error:
        with RunDirectory(tmp_path, "St") as run:
            _with_checkpoint(run)
            raise DomainFileError("data/St.h5 changed while training")
    message = str(error.value)
    assert message.startswith("data/St.h5 changed while training") and "--resume" in message
    assert (tmp_path / ".partial-St" / CHECKPOINT_FILE).is_file()


def test_a_full_disk_after_the_first_checkpoint_keeps_it(tmp_path):
    with pytest.raises(RunError, match="free some space, then continue with --resume"):
        with RunDirectory(tmp_path, "St") as run:
            _with_checkpoint(run)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert (tmp_path / ".partial-St" / CHECKPOINT_FILE).is_file()


def test_a_failure_before_any_checkpoint_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with RunDirectory(tmp_path, "St") as run:
            (run.path / "config.json").write_text("{}")
            raise ValueError("boom")
    assert _entries(tmp_path) == []


def _run_train(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVLSTM_TL_DATA", raising=False)
    return run_main(train.main, argv, prog=train.PROG)


@pytest.mark.slow
def test_disk_full_while_publishing_keeps_the_trained_epochs_and_resume_finishes(tmp_path, monkeypatch, capsys):
    write_tiny(tmp_path / "data")
    real_save = keras.Model.save

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(keras.Model, "save", full_disk)
    assert _run_train(["--source", "Tiny", *TINY], tmp_path, monkeypatch) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "--resume" in lines[0], lines
    partial = tmp_path / "runs" / ".partial-Tiny"
    assert (partial / CHECKPOINT_FILE).is_file()

    monkeypatch.setattr(keras.Model, "save", real_save)
    fits = []
    real_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **k: fits.append(k) or real_fit(self, *a, **k))
    assert _run_train(["--source", "Tiny", *TINY, "--resume"], tmp_path, monkeypatch) == 0
    run = tmp_path / "runs" / "Tiny"
    assert sorted(_entries(run)) == sorted(RUN_FILES)
    assert len(json.loads((run / "metrics.json").read_text())) > 0
    # The resumed fit starts after the two trained epochs: nothing is trained again.
    assert fits[0]["initial_epoch"] == 2
    assert _entries(tmp_path / "runs") == ["Tiny"]


# ------------------------------------------------------------ crash-safe publishing


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler cleans up."""


def _finished_partial(runs, name="St", text="new"):
    partial = runs / f".partial-{name}"
    partial.mkdir(parents=True)
    for file in RUN_FILES:
        (partial / file).write_text(text)
    (partial / CHECKPOINT_FILE).write_bytes(b"state")
    (partial / COMPLETE_MARKER).write_text("")
    return partial


def _published(runs, name="St", text="old"):
    final = runs / name
    final.mkdir(parents=True)
    for file in RUN_FILES:
        (final / file).write_text(text)
    return final


def _crash_at(step):
    def pause(reached):
        if reached == step:
            raise Crash(step)
    return pause


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("step", ["after-exchange", "between-renames", "done"])
def test_a_crash_while_replacing_a_run_never_leaves_the_name_absent(tmp_path, monkeypatch, exchange, step):
    if not exchange:
        monkeypatch.setattr(files_module, "exchange_folders", lambda a, b: False)
    runs = tmp_path / "runs"
    _published(runs)
    partial = _finished_partial(runs)
    try:
        replace_folder(partial, runs / "St", pause=_crash_at(step))
    except Crash:
        pass
    if exchange:  # whatever the step, the name holds a complete run, old or new
        assert (runs / "St" / "config.json").read_text() in ("old", "new")
    # Without exchange the old run may be aside in .old-St-*: recovery decides either way.
    recover_run(runs, "St")
    assert _entries(runs) == ["St"]
    assert (runs / "St" / "config.json").read_text() == "new"
    assert sorted(_entries(runs / "St")) == sorted(RUN_FILES)


def test_a_complete_partial_is_published_by_the_next_command(tmp_path):
    runs = tmp_path / "runs"
    _finished_partial(runs)
    # find_run (evaluate, transfer --from) finishes the interrupted publishing.
    assert find_run(runs, "St") == runs / "St"
    assert _entries(runs) == ["St"]
    assert sorted(_entries(runs / "St")) == sorted(RUN_FILES)


def test_a_moved_aside_old_run_is_restored_when_nothing_replaced_it(tmp_path):
    runs = tmp_path / "runs"
    old = runs / ".old-St-abc"
    _published(old)
    assert "restored" in recover_run(runs, "St")
    assert _entries(runs) == ["St"]
    assert (runs / "St" / "config.json").read_text() == "old"


def test_an_interrupted_run_without_a_finish_is_left_for_resume(tmp_path):
    runs = tmp_path / "runs"
    partial = runs / ".partial-St"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    (partial / CHECKPOINT_FILE).write_bytes(b"state")
    assert recover_run(runs, "St") is None
    assert _entries(partial) == sorted([CHECKPOINT_FILE, "config.json"])


def _train_process(tmp_path, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "convlstm_tl.train", "--source", "Tiny", "--data-dir", "data", *TINY, *extra],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["before-rename", "after-exchange", "before-cleanup"])
def test_sigkill_while_publishing_with_overwrite_then_the_next_command_recovers(tmp_path, step):
    write_tiny(tmp_path / "data")
    runs = tmp_path / "runs"
    _published(runs, "Tiny")
    process = _train_process(tmp_path, "--overwrite", env={PAUSE_ENV: step})
    _wait_for(runs / ".paused", process)
    process.kill()
    process.wait()
    (runs / ".paused").unlink()
    # The name is never absent, and it holds a whole run (the old one or the new one).
    assert (runs / "Tiny" / "config.json").is_file()
    # The next command that looks at the run finishes the publishing.
    assert find_run(runs, "Tiny") == runs / "Tiny"
    assert _entries(runs) == ["Tiny"]
    assert sorted(_entries(runs / "Tiny")) == sorted(RUN_FILES)
    assert json.loads((runs / "Tiny" / "config.json").read_text())["kind"] == "source"  # the new run


# ------------------------------------------------------------ SIGTERM


@pytest.mark.slow
def test_sigterm_while_training_is_ctrl_c_exit_143_and_resume_finishes(tmp_path):
    write_tiny(tmp_path / "data")
    partial = tmp_path / "runs" / ".partial-Tiny"
    process = _train_process(tmp_path, "--epochs", "200", "--patience", "0")
    _wait_for(partial / CHECKPOINT_FILE, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in err, err
    assert (partial / CHECKPOINT_FILE).is_file()


def test_sigterm_handler_is_restored_after_run_main():
    before = signal.getsignal(signal.SIGTERM)
    assert run_main(lambda argv: 0, [], prog="x") == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_raised_inside_main_returns_143(capsys):
    def main(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    assert run_main(main, [], prog="x") == EXIT_SIGTERM
    assert capsys.readouterr().err.strip() == "x: interrupted"


@pytest.mark.parametrize("library_error", [RuntimeError("Exiting device scope without proper scope nesting"),
                                           OSError("a library's own error")])
def test_sigterm_a_library_turned_into_its_own_error_is_still_an_interrupt(tmp_path, capsys, library_error):
    """TensorFlow raises RuntimeError when the interrupt lands in a device scope's exit: still 143 and one line."""
    run = tmp_path / "runs"

    def main(argv):
        with RunDirectory(run, "Tiny") as directory:
            (directory.path / CHECKPOINT_FILE).write_bytes(b"epoch 1")
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                raise library_error
        return 0

    assert run_main(main, [], prog="x") == EXIT_SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "--resume" in err[0]
    assert (run / ".partial-Tiny" / CHECKPOINT_FILE).is_file()


def test_a_full_disk_anywhere_is_one_line(capsys):
    def main(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/evaluation.json")

    assert run_main(main, [], prog="x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device (out/evaluation.json)" in err[0]


# ------------------------------------------------------------ evaluate --out


def test_evaluate_refuses_a_folder_with_the_users_files(tmp_path):
    out = tmp_path / "thesis"
    (out / "src").mkdir(parents=True)
    (out / "evaluation.md").write_text("earlier")
    (out / "src" / "thesis.tex").write_text("my thesis")
    (out / "results.csv").write_text("mine")
    with pytest.raises(Exception, match="not an earlier evaluation's"):
        check_output_dir(out)
    assert (out / "src" / "thesis.tex").read_text() == "my thesis"


def test_evaluate_accepts_a_folder_of_its_own_files(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    for name in ("evaluation.json", "evaluation.md", "report-St-ms.txt", "confusion-St-ms.png"):
        (out / name).write_text("earlier")
    assert check_output_dir(out) == out


def test_file_stems_are_distinct_for_distinct_names():
    names = ["日本", "中国", "a/b", "a_b", "St", "x" * 300]
    stems = [file_stem(name) for name in names]
    assert len(set(stems)) == len(names)
    assert file_stem("St") == "St"
    assert all(len(stem) <= 80 for stem in stems)


@pytest.mark.slow
def test_evaluate_interrupted_or_out_of_space_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    from conftest import write_tiny as write
    from convlstm_tl.config import ModelConfig, TrainConfig
    from convlstm_tl.evaluation import report as evaluation_module
    from convlstm_tl.training.source import train_source

    write(tmp_path / "data")
    train_source(TrainConfig(source="Tiny", data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
                             epochs=1, batch_size=16, model=ModelConfig(filters=(4,), head_units=8)), verbose=0)
    monkeypatch.chdir(tmp_path)
    argv = ["--runs", "Tiny", "--domains", "Tiny", "--data-dir", "data", "--out", "out", "--quiet"]
    for fault, code in ((OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out"), 2),
                        (KeyboardInterrupt(), 130)):
        def fail(*args, fault=fault, **kwargs):
            raise fault

        monkeypatch.setattr(evaluation_module, "format_markdown", fail)
        assert run_main(evaluate.main, argv, prog=evaluate.PROG) == code
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert _entries(tmp_path) == ["data", "runs"]


@pytest.mark.slow
def test_a_domain_file_replaced_mid_run_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    domain = write_tiny(tmp_path / "data")
    from convlstm_tl.training import source as source_module

    real = source_module.evaluate_and_save

    def replaced_then_evaluate(*args, **kwargs):
        write_tiny(tmp_path / "data", frame_shape=(4, 1, 6, 2))  # a re-run of data_prep with other frames
        return real(*args, **kwargs)

    monkeypatch.setattr(source_module, "evaluate_and_save", replaced_then_evaluate)
    code = _run_train(["--source", "Tiny", *TINY], tmp_path, monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(domain.path.name) in err[0] and "--resume" in err[0]
    assert (tmp_path / "runs" / ".partial-Tiny" / CHECKPOINT_FILE).is_file()
