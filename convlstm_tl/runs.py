"""Run directories that are either complete or absent.

A run is written into a hidden temporary folder inside ``--runs-dir`` and
renamed to its final name only when every file is there; a failure removes
the temporary folder.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

from convlstm_tl.errors import RunError

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "model.keras", "history.csv", "metrics.json", "report.txt", "confusion_matrix.png")


def check_run_target(runs_dir, name, *, overwrite=False):
    """Fail early if ``runs_dir`` is not writable or run ``name`` exists.

    Returns:
        The final path of the run.
    """
    runs_dir = Path(runs_dir)
    final = runs_dir / name
    if final.exists() and not overwrite:
        raise RunError(f"run {final} already exists; pass --overwrite to replace it or --name to pick another")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create runs directory {runs_dir}: {error.strerror}") from None
    if not os.access(runs_dir, os.W_OK | os.X_OK):
        raise RunError(f"runs directory {runs_dir} is not writable; pass --runs-dir with a folder you can write")
    return final


class RunDirectory:
    """Context manager that builds a run in a temporary folder.

    Example:

    >>> with RunDirectory("runs", "St") as run:
    ...     (run.path / "metrics.json").write_text("{}")
    >>> # runs/St now exists with everything written inside the block.
    """

    def __init__(self, runs_dir, name, *, overwrite=False):
        self.runs_dir = Path(runs_dir)
        self.name = name
        self.overwrite = overwrite
        self.final_path = check_run_target(runs_dir, name, overwrite=overwrite)
        self.path = None

    def __enter__(self):
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".tmp-{self.name}-", dir=self.runs_dir))
        except OSError as error:
            raise RunError(f"cannot write in runs directory {self.runs_dir}: {error.strerror}") from None
        # mkdtemp makes a private folder; a run should get the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        self.path.chmod(0o777 & ~umask)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            self._publish()
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        log.info("wrote run %s", self.final_path)
        return False

    def _publish(self):
        if self.final_path.exists():
            if not self.overwrite:
                raise RunError(f"run {self.final_path} appeared while training; pass --overwrite to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".old-{self.name}-", dir=self.runs_dir))
            os.replace(self.final_path, old / self.name)
            os.replace(self.path, self.final_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final_path)
        self.path = self.final_path


def find_run(runs_dir, name):
    """Return the path of a complete run, or raise a RunError saying what is missing."""
    path = Path(runs_dir) / name
    if not path.is_dir():
        raise RunError(f"run {path} not found; train it first or pass --runs-dir with the folder that has it")
    for required in ("config.json", "model.keras"):
        if not (path / required).is_file():
            raise RunError(f"run {path} has no {required}; it is incomplete, train it again")
    return path
