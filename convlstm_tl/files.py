"""Small file-system helpers shared by the writers of domain files, runs and evaluations."""

import os
from pathlib import Path


def current_umask():
    """The process's umask (reading it means setting it, so it is set back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_usual_permissions(path):
    """Give a file or folder made by ``tempfile`` the permissions a plain ``open``/``mkdir`` would.

    ``mkstemp`` and ``mkdtemp`` create private entries (0600 / 0700); a
    domain file or run renamed from one should be as readable as any other
    file the user writes, within the umask.
    """
    path = Path(path)
    base = 0o777 if path.is_dir() else 0o666
    path.chmod(base & ~current_umask())
