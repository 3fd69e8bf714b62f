"""Small file-system helpers shared by the writers of domain files, runs and evaluations."""

import errno
import os
import shutil
import tempfile
from pathlib import Path

# Errors of the environment that the user fixes (space, quota, permissions, a
# name too long): reported as one line wherever they surface.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                                errno.ENAMETOOLONG})


def environment_problem(error):
    """The one line saying what the user must fix for ``error``, or None when it is not the environment's."""
    if not isinstance(error, OSError) or error.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror}{where}; free some space or choose a folder you can write"


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


OLD_PREFIX = ".old-"


def exchange_folders(a, b):
    """Swap folders ``a`` and ``b`` in one atomic step (Linux ``renameat2``).

    Returns:
        True if swapped; False where the system or file system cannot
        exchange (then nothing changed).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def discard_folder(folder, name):
    """Delete ``folder``, first renamed to ``.old-<name>-*`` so that a crash mid-delete leaves a name we own."""
    folder = Path(folder)
    old = Path(tempfile.mkdtemp(prefix=f"{OLD_PREFIX}{name}-", dir=folder.parent))
    os.replace(folder, old / name)
    shutil.rmtree(old, ignore_errors=True)


def write_atomically(path, write, *, mode="w", **open_args):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The file is flushed to disk before the rename, so a crash (even SIGKILL)
    leaves either the previous file or the new one, never a part; on any
    failure the temporary file is removed. The temporary name starts with a
    dot (a run folder's working files do).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{'' if path.name.startswith('.') else '.'}{path.name}.{os.getpid()}.tmp")
    try:
        with open(partial, mode, **open_args) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def replace_folder(new, final, *, pause=None):
    """Give folder ``new`` the name ``final``, replacing what is there, never leaving ``final`` absent.

    Over an existing folder the two are exchanged atomically and the old one
    is deleted; where exchange is unsupported, the old folder is renamed to
    ``.old-<name>-*`` first, so a crash between the two renames leaves it
    there, complete, for the caller's recovery.

    Args:
        new: the folder to publish.
        final: its final path.
        pause: optional ``pause(step)`` called between the steps (tests kill
            the process there).
    """
    new, final = Path(new), Path(final)
    pause = pause or (lambda step: None)
    if not final.exists():
        os.replace(new, final)
    elif exchange_folders(new, final):
        pause("after-exchange")
        discard_folder(new, final.name)
    else:
        old = Path(tempfile.mkdtemp(prefix=f"{OLD_PREFIX}{final.name}-", dir=final.parent))
        os.replace(final, old / final.name)
        pause("between-renames")
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
