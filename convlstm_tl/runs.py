"""Run directories that are either complete or absent.

A run is written into a hidden folder ``<runs-dir>/.partial-<name>`` and
renamed to its final name only when every file is there. A failure removes
the folder; an interruption (Ctrl-C, or a crash that kills the process) leaves
it with the checkpoint of the last finished epoch, for ``--resume``. While a
process writes a run it holds a lock on the folder, so a second process
cannot write the same run at the same time.
"""

import errno
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

from convlstm_tl.config import RUN_CONTROL_KEYS, load_json, save_json
from convlstm_tl.errors import Interrupted, RunError, UserError

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "model.keras", "history.csv", "metrics.json", "report.txt", "confusion_matrix.png")
PARTIAL_PREFIX = ".partial-"
# Working files of an unfinished run (the checkpoint) have names starting with
# this; publishing the run removes them.
WORK_FILE_PREFIX = "."
# Errors of a write that the user can fix (space, quota, permissions).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def partial_path(runs_dir, name):
    """The folder where run ``name`` is built: ``<runs_dir>/.partial-<name>``."""
    return Path(runs_dir) / f"{PARTIAL_PREFIX}{name}"


def check_run_target(runs_dir, name, *, overwrite=False, resume=False):
    """Fail early if run ``name`` cannot be written (or, with ``resume``, continued).

    Refuses a run that exists (unless ``overwrite``), an interrupted run
    that is neither resumed nor overwritten, a run another process is
    writing, ``resume`` with nothing to resume, and a runs directory that
    cannot be written.

    Returns:
        The final path of the run.
    """
    runs_dir = Path(runs_dir)
    final = runs_dir / name
    partial = partial_path(runs_dir, name)
    if partial.is_dir() and _is_locked(partial):
        raise RunError(f"run {name} is being written by another process now ({partial}); wait or pick another --name")
    if resume:
        if not partial.is_dir():
            found = f"run {final} is finished" if final.exists() else f"no interrupted run {name} in {runs_dir}"
            raise RunError(f"nothing to resume: {found}; train without --resume")
    else:
        if final.exists() and not overwrite:
            raise RunError(f"run {final} already exists; pass --overwrite to replace it or --name to pick another")
        if partial.exists() and not overwrite:
            raise RunError(f"an interrupted run {name} is in {partial}; pass --resume to continue it"
                           " or --overwrite to start again")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create runs directory {runs_dir}: {error.strerror}") from None
    if not os.access(runs_dir, os.W_OK | os.X_OK):
        raise RunError(f"runs directory {runs_dir} is not writable; pass --runs-dir with a folder you can write")
    return final


class RunDirectory:
    """Context manager that builds a run in ``<runs_dir>/.partial-<name>``.

    Args:
        runs_dir: the folder of runs.
        name: the run's name.
        overwrite: replace a finished or interrupted run of that name.
        resume: continue the interrupted run of that name in its folder.
        publish: False builds the run in a throwaway folder outside
            ``runs_dir`` and keeps nothing (a worker of a multi-worker run
            other than the chief: it must do the chief's work, and saves).

    Leaving the block publishes the run (renames the folder to ``name``,
    without its working files); an exception removes the folder, except a
    ``KeyboardInterrupt`` once a checkpoint is saved, which keeps it for
    ``--resume`` and is raised again as :class:`~convlstm_tl.errors.Interrupted`.
    A write that fails for lack of space or permission becomes a ``RunError``.

    Example:

    >>> with RunDirectory("runs", "St") as run:
    ...     (run.path / "metrics.json").write_text("{}")
    >>> # runs/St now exists with everything written inside the block.
    """

    def __init__(self, runs_dir, name, *, overwrite=False, resume=False, publish=True):
        self.runs_dir = Path(runs_dir)
        self.name = name
        self.overwrite = overwrite
        self.resume = resume
        self.publish = publish
        self.final_path = self.runs_dir / name
        if publish:
            check_run_target(runs_dir, name, overwrite=overwrite, resume=resume)
        self.path = None
        self._lock = None

    def __enter__(self):
        if not self.publish:
            self.path = Path(tempfile.mkdtemp(prefix=f"convlstm_tl-{self.name}-"))
            return self
        partial = partial_path(self.runs_dir, self.name)
        try:
            if not self.resume:
                if partial.exists():  # --overwrite of an interrupted run: start it again
                    _unlock(_lock(partial))
                    shutil.rmtree(partial)
                # mkdir, not exist_ok: of two processes starting the same run, one fails here.
                partial.mkdir()
            self._lock = _lock(partial)
        except FileExistsError:
            raise RunError(f"run {self.name} was started by another process just now ({partial})") from None
        except OSError as error:
            raise RunError(f"cannot write in runs directory {self.runs_dir}: {error.strerror}") from None
        self.path = partial
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._finish()
                return False
            if issubclass(exc_type, KeyboardInterrupt) and self.publish and _work_files(self.path):
                raise Interrupted(f"interrupted; the last finished epoch is saved in {self.path},"
                                  " continue with --resume") from None
            if self.resume and issubclass(exc_type, UserError):
                return False  # e.g. changed settings: keep the interrupted run for a corrected --resume
            shutil.rmtree(self.path, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
                raise RunError(f"cannot write run {self.final_path}: {exc.strerror}; free some space or pass"
                               " --runs-dir with a folder you can write") from None
            return False
        finally:
            _unlock(self._lock)
            self._lock = None

    def save_config(self, run_config):
        """Write ``config.json``; when resuming, first check the settings are the interrupted run's.

        Only the ``"config"`` entries that decide what is trained are compared
        (not ``overwrite`` / ``resume``), so a resume may not change them.
        """
        path = self.path / "config.json"
        if self.resume and path.is_file():
            saved = load_json(path).get("config", {})
            given = run_config.get("config", {})
            changed = sorted(key for key in set(saved) | set(given) if key not in RUN_CONTROL_KEYS
                             and saved.get(key) != given.get(key))
            if changed:
                key = changed[0]
                raise RunError(f"--resume needs the settings of the interrupted run {self.name}, but {key} was"
                               f" {saved.get(key)!r} and is now {given.get(key)!r}; drop the changed options")
        save_json(path, run_config)

    def _finish(self):
        if not self.publish:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            for path in _work_files(self.path):
                path.unlink()
            self._publish()
        except BaseException as error:
            shutil.rmtree(self.path, ignore_errors=True)
            if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
                raise RunError(f"cannot write run {self.final_path}: {error.strerror}") from None
            raise
        log.info("wrote run %s", self.final_path)

    def _publish(self):
        if self.final_path.exists():
            # A resumed run replaces a finished one only if it was started with
            # --overwrite: a plain start refuses an existing run.
            if not (self.overwrite or self.resume):
                raise RunError(f"run {self.final_path} appeared while training; pass --overwrite to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".old-{self.name}-", dir=self.runs_dir))
            os.replace(self.final_path, old / self.name)
            os.replace(self.path, self.final_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final_path)
        self.path = self.final_path


def _work_files(folder):
    return [path for path in Path(folder).iterdir() if path.name.startswith(WORK_FILE_PREFIX)] if folder else []


def _lock(folder):
    """Lock ``folder`` for this process (released when the process dies, even by SIGKILL)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunError(f"run {Path(folder).name[len(PARTIAL_PREFIX):]} is being written by another process now"
                       f" ({folder}); wait or pick another --name") from None
    return fd


def _unlock(fd):
    if fd is not None:
        os.close(fd)


def _is_locked(folder):
    try:
        _unlock(_lock(folder))
    except RunError:
        return True
    except OSError:
        return False
    return False


def find_run(runs_dir, name):
    """Return the path of a complete run, or raise a RunError saying what is missing."""
    path = Path(runs_dir) / name
    if not path.is_dir():
        raise RunError(f"run {path} not found; train it first or pass --runs-dir with the folder that has it")
    for required in ("config.json", "model.keras"):
        if not (path / required).is_file():
            raise RunError(f"run {path} has no {required}; it is incomplete, train it again")
    return path
