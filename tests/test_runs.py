"""Tests of ``convlstm_tl.runs.directory``: run directories are complete or absent."""

import os
import stat

import pytest

from convlstm_tl.errors import RunError
from convlstm_tl.runs.directory import RunDirectory, check_run_target, find_run


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_publishes_on_success(tmp_path):
    runs = tmp_path / "runs"
    with RunDirectory(runs, "St") as run:
        assert run.path.parent == runs
        assert run.path.name == ".partial-St"
        # Nothing under the final name while the run is being written.
        assert not (runs / "St").exists()
        (run.path / "metrics.json").write_text("{}")
    assert run.path == runs / "St"
    assert (runs / "St" / "metrics.json").read_text() == "{}"
    assert _entries(runs) == ["St"]


def test_published_folder_has_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with RunDirectory(tmp_path, "St"):
            pass
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "St").stat().st_mode) == 0o755


def test_exception_removes_temp_and_publishes_nothing(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        with RunDirectory(tmp_path, "St") as run:
            (run.path / "config.json").write_text("{}")
            raise ValueError("boom")
    assert _entries(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunDirectory(tmp_path, "St") as run:
            (run.path / "config.json").write_text("{}")
            raise KeyboardInterrupt
    assert _entries(tmp_path) == []


def test_existing_run_is_refused_without_overwrite(tmp_path):
    (tmp_path / "St").mkdir()
    (tmp_path / "St" / "old.txt").write_text("old")
    with pytest.raises(RunError) as error:
        RunDirectory(tmp_path, "St")
    assert "set overwrite" in str(error.value) and error.value.field == ("overwrite", "name")
    with pytest.raises(RunError):
        check_run_target(tmp_path, "St")
    assert (tmp_path / "St" / "old.txt").read_text() == "old"
    assert _entries(tmp_path) == ["St"]


def test_existing_run_is_replaced_with_overwrite(tmp_path):
    (tmp_path / "St").mkdir()
    (tmp_path / "St" / "old.txt").write_text("old")
    with RunDirectory(tmp_path, "St", overwrite=True) as run:
        (run.path / "new.txt").write_text("new")
        # The old run stays complete until the new one is ready.
        assert (tmp_path / "St" / "old.txt").exists()
    assert _entries(tmp_path / "St") == ["new.txt"]
    assert _entries(tmp_path) == ["St"]  # no .old-* or .tmp-* left


def test_failed_overwrite_keeps_old_run(tmp_path):
    (tmp_path / "St").mkdir()
    (tmp_path / "St" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with RunDirectory(tmp_path, "St", overwrite=True):
            raise RuntimeError("training failed")
    assert _entries(tmp_path) == ["St"]
    assert (tmp_path / "St" / "old.txt").read_text() == "old"


def test_run_that_appears_while_writing_is_not_clobbered(tmp_path):
    with pytest.raises(RunError, match="appeared while training"):
        with RunDirectory(tmp_path, "St") as run:
            (run.path / "mine.txt").write_text("mine")
            (tmp_path / "St").mkdir()
            (tmp_path / "St" / "theirs.txt").write_text("theirs")
    assert _entries(tmp_path) == ["St"]
    assert _entries(tmp_path / "St") == ["theirs.txt"]


def test_runs_dir_is_created(tmp_path):
    runs = tmp_path / "a" / "b"
    assert check_run_target(runs, "St") == runs / "St"
    assert runs.is_dir()


def test_runs_dir_that_is_a_file_is_a_run_error(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(RunError, match="cannot create runs directory"):
        RunDirectory(tmp_path / "runs", "St")
    with pytest.raises(RunError):
        RunDirectory(tmp_path / "runs" / "deeper", "St")


def test_unwritable_runs_dir_is_a_run_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o500)
    try:
        with pytest.raises(RunError, match="not writable"):
            RunDirectory(runs, "St")
        with pytest.raises(RunError):
            RunDirectory(runs / "sub", "St")
    finally:
        runs.chmod(0o700)
    assert _entries(runs) == []


def test_find_run(tmp_path):
    with pytest.raises(RunError, match="not found"):
        find_run(tmp_path, "St")
    (tmp_path / "St").mkdir()
    with pytest.raises(RunError, match="no config.json"):
        find_run(tmp_path, "St")
    (tmp_path / "St" / "config.json").write_text("{}")
    with pytest.raises(RunError, match="no model.keras"):
        find_run(tmp_path, "St")
    (tmp_path / "St" / "model.keras").write_bytes(b"")
    assert find_run(tmp_path, "St") == tmp_path / "St"


def test_runs_dir_without_write_access_is_a_run_error(tmp_path, monkeypatch):
    # Works also as root (for whom chmod does not take write access away).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(RunError, match="is not writable; choose a runs folder you can write"):
        RunDirectory(tmp_path, "St")
    assert _entries(tmp_path) == []
