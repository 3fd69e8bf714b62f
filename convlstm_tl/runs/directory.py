"""Run directories that are either complete or absent.

A run is written into a hidden folder ``<runs-dir>/.partial-<name>`` and
renamed to its final name only when every file is there. Once the folder
holds a checkpoint (the last finished epoch), no failure deletes it: an
error, Ctrl-C, SIGTERM or a crash leaves it for ``--resume``; a failure before
the first checkpoint removes the folder. Publishing survives SIGKILL at any
step (see :func:`publish_complete` and :func:`recover_run`). While a
process writes a run it holds a lock on the folder, so a second process
cannot write the same run at the same time.
"""

import fcntl
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

from convlstm_tl.config import RUN_CONTROL_KEYS
from convlstm_tl.errors import Interrupted, RunError, UserError, interrupt_in
from convlstm_tl.files import ENVIRONMENT_ERRNOS, OLD_PREFIX, discard_folder, replace_folder
from convlstm_tl.jsonio import load_json, save_json

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "model.keras", "history.csv", "metrics.json", "report.txt", "confusion_matrix.png")
PARTIAL_PREFIX = ".partial-"
# Working files of an unfinished run (the checkpoint) have names starting with
# this; publishing the run removes them.
WORK_FILE_PREFIX = "."
# The checkpoint of the last finished epoch (see convlstm_tl.training.checkpoint), a working file.
CHECKPOINT_FILE = ".checkpoint.npz"


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
    recover_run(runs_dir, name)
    if partial.is_dir() and _is_locked(partial):
        raise RunError(f"run {name} is being written by another process now ({partial}); wait or pick another name",
                       field="name")
    if resume:
        if not partial.is_dir():
            found = f"run {final} is finished" if final.exists() else f"no interrupted run {name} in {runs_dir}"
            raise RunError(f"nothing to resume: {found}; train without resume", field="resume")
    else:
        if final.exists() and not overwrite:
            raise RunError(f"run {final} already exists; set overwrite to replace it or pick another name",
                           field=("overwrite", "name"))
        if partial.exists() and not overwrite:
            raise RunError(f"an interrupted run {name} is in {partial}; set resume to continue it"
                           " or overwrite to start again", field=("resume", "overwrite"))
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create runs directory {runs_dir}: {error.strerror}", field="runs_dir") from None
    if not os.access(runs_dir, os.W_OK | os.X_OK):
        raise RunError(f"runs directory {runs_dir} is not writable; choose a runs folder you can write",
                       field="runs_dir")
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
        self._inputs = {}

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
            if not self.publish:
                shutil.rmtree(self.path, ignore_errors=True)
                return False
            keep = (self.path / CHECKPOINT_FILE).is_file()  # the last finished epoch: no failure deletes it
            if not keep and not (self.resume and issubclass(exc_type, UserError)):
                shutil.rmtree(self.path, ignore_errors=True)
            error = self._explain(exc_type, exc, kept=keep)
            if error is not None:
                raise error from None
            if keep and not issubclass(exc_type, UserError):
                log.error("the last finished epoch is kept in %s; continue with --resume once the cause is"
                          " fixed", self.path)
            return False
        finally:
            _unlock(self._lock)
            self._lock = None

    def watch(self, *paths):
        """Note input files (domain files) whose replacement while training explains a failure."""
        for path in paths:
            self._inputs[Path(path)] = _identity(path)

    def _explain(self, exc_type, exc, *, kept):
        """The one-line error to raise instead of ``exc``, or None to let ``exc`` through."""
        resume = f"; the last finished epoch is saved in {self.path}" if kept else ""
        if interrupt_in(exc) is not None:  # also an interrupt a library turned into an error of its own
            return Interrupted(f"interrupted{resume}, continue with --resume") if kept else None
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            how = "free some space, then continue with --resume" if kept else \
                "free some space or choose a runs folder you can write"
            return RunError(f"cannot write run {self.final_path}: {exc.strerror}{resume}: {how}")
        if isinstance(exc, UserError):
            return type(exc)(f"{_one_line(exc)}{resume}: fix this, then continue with --resume") if kept else None
        changed = next((path for path, seen in self._inputs.items() if _identity(path) != seen), None)
        if changed is not None:
            how = "continue with --resume" if kept else "run again"
            return RunError(f"{changed} was replaced or changed while run {self.name} trained{resume}: once the"
                            f" file is final, {how}")
        return None  # a bug: it keeps its traceback

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
                raise RunError(f"resume needs the settings of the interrupted run {self.name}, but {key} was"
                               f" {saved.get(key)!r} and is now {given.get(key)!r}; give the settings it had",
                               field=key)
        save_json(path, run_config)

    def _finish(self):
        if not self.publish:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        if self.final_path.exists() and not (self.overwrite or self.resume):
            # A resumed run replaces a finished one only if it was started with
            # --overwrite: a plain start refuses an existing run.
            if not _work_files(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
                raise RunError(f"run {self.final_path} appeared while training; set overwrite to replace it",
                               field="overwrite")
            # A resumed run publishes over it (see the condition above).
            raise RunError(f"run {self.final_path} appeared while training; the trained run is kept in"
                           f" {self.path}: continue it with resume to replace that run", field="resume")
        try:
            _mark_complete(self.path)
            publish_complete(self.path, self.final_path)
        except OSError as error:
            if error.errno in ENVIRONMENT_ERRNOS:
                raise RunError(f"cannot publish run {self.final_path}: {error.strerror}; free some space,"
                               f" then continue with --resume (the run is kept in {self.path})") from None
            raise
        self.path = self.final_path
        log.info("wrote run %s", self.final_path)


# ------------------------------------------------------------ publishing
#
# Publishing is crash-safe: at every instant, a SIGKILL leaves either the old
# run or the new one under the final name (never neither), and what is left
# over is recognised and finished by the next command that looks at the run
# (:func:`recover_run`). The steps:
#
# 1. ``.complete`` is written into the partial folder: from now on the
#    partial folder is a finished run that only needs publishing.
# 2. The partial folder takes the final name: a plain rename, or, over an
#    existing run, an atomic exchange of the two folders (Linux renameat2),
#    after which the partial name holds the old run, without ``.complete``.
#    Where the exchange is unsupported, the old run is first renamed to
#    ``.old-<name>-*``.
# 3. The working files (checkpoint, ``.complete``) are removed from the
#    published run, and the old run is deleted.

COMPLETE_MARKER = ".complete"
# Test-only: name of a publishing step at which the process pauses (so a
# test can kill it there); the process first creates ``<runs_dir>/.paused``.
PAUSE_ENV = "CONVLSTM_TL_TEST_PAUSE_AT"


def _mark_complete(folder):
    marker = Path(folder) / COMPLETE_MARKER
    with open(marker, "w") as f:
        f.flush()
        os.fsync(f.fileno())


def _pause_point(step, runs_dir):
    if os.environ.get(PAUSE_ENV) == step:
        (Path(runs_dir) / ".paused").write_text(step)
        import time

        time.sleep(3600)


def publish_complete(partial, final):
    """Give the finished run in ``partial`` the name ``final``, then clean up (steps 2 and 3 above)."""
    partial, final = Path(partial), Path(final)
    pause = functools.partial(_pause_point, runs_dir=final.parent)
    pause("before-rename")
    replace_folder(partial, final, pause=pause)
    pause("before-cleanup")
    for path in _work_files(final):
        path.unlink(missing_ok=True)


def recover_run(runs_dir, name):
    """Finish what a killed process left of publishing run ``name``; return what was done, or None.

    - a partial folder marked ``.complete``: publish it;
    - a partial folder that is a replaced old run (left by a kill right after
      the exchange): delete it;
    - ``.old-<name>-*`` folders: put the run back under its name if the name
      is missing, else delete them (the replacement had finished);
    - working files left in a published run: remove them.

    A partial folder locked by a living process is left alone.
    """
    runs_dir = Path(runs_dir)
    final = runs_dir / name
    partial = partial_path(runs_dir, name)
    if not runs_dir.is_dir() or (partial.is_dir() and _is_locked(partial)):
        return None
    done = None
    for old in sorted(runs_dir.glob(f"{OLD_PREFIX}{name}-*")):
        if not (old / name).is_dir():
            continue
        if final.exists() or (partial / COMPLETE_MARKER).is_file():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old / name, final)
            shutil.rmtree(old, ignore_errors=True)
            done = f"restored run {final}, which an interrupted --overwrite had moved aside"
    if partial.is_dir() and (partial / COMPLETE_MARKER).is_file():
        publish_complete(partial, final)
        done = f"published run {final}, whose publishing was interrupted"
    elif partial.is_dir() and final.is_dir() and (partial / "config.json").is_file() and not _work_files(partial):
        discard_folder(partial, name)  # the old run an exchange put there; the new one is published
        done = f"removed the run that {final} replaced"
    if final.is_dir() and (final / COMPLETE_MARKER).exists():
        for path in _work_files(final):
            path.unlink(missing_ok=True)
    if done:
        log.info("%s", done)
    return done


def _identity(path):
    """What tells a file apart from the one that replaces it (None if it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _one_line(error):
    return " ".join(str(error).split())


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
                       f" ({folder}); wait or pick another name", field="name") from None
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


def _recorded_kind(path):
    """The ``kind`` a run folder's ``config.json`` records, or None if it cannot be read."""
    try:
        kind = load_json(path / "config.json").get("kind")
    except (UserError, OSError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def find_run(runs_dir, name):
    """Return the path of a complete run, or raise a RunError saying what is missing."""
    path = Path(runs_dir) / name
    recover_run(runs_dir, name)
    if not path.is_dir():
        raise RunError(f"run {path} not found; train it first or give the runs folder that has it", field="runs_dir")
    if _recorded_kind(path) == "baseline":
        raise RunError(f"run {path} is a baseline run (classical models, no ConvLSTM model); give a source,"
                       " transfer or pretrain run")
    for required in ("config.json", "model.keras"):
        if not (path / required).is_file():
            raise RunError(f"run {path} has no {required}; it is incomplete, train it again")
    return path
