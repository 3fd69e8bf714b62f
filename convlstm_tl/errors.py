"""Errors that a user can fix.

Every CLI turns a :class:`UserError` into one line on stderr and exit code 2
(see :mod:`convlstm_tl.cli`); anything else is a bug and keeps its traceback.
An error about one setting names the config field (``field``); a command line
adds the flag that sets it, so the library speaks in fields and the CLI in
flags.
"""


class UserError(Exception):
    """A mistake in the user's input, options or files.

    Args:
        message: a single line that says what is wrong and how to fix it.
        field: the config field at fault, if one is (e.g. ``"strategy"``), or
            a tuple of the fields that clash.
    """

    def __init__(self, message="", *, field=None):
        super().__init__(message)
        self.field = field


class DomainFileError(UserError):
    """A domain file is missing, corrupt, or does not follow the format."""


class ConfigError(UserError):
    """A configuration value or file is invalid."""


class RunError(UserError):
    """A run directory is missing, incomplete, or cannot be written."""


def first_line(error, limit=200):
    """The first line of an exception's message (its type's name if it has none), for a one-line error."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


class Interrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the message says how to resume it."""


def interrupt_in(error, kind=KeyboardInterrupt):
    """The Ctrl-C or SIGTERM behind ``error``: ``error`` itself if it is one, else the first in its context chain.

    A library can turn an interrupt that lands inside it into an error of its
    own (TensorFlow raises ``RuntimeError: Exiting device scope without
    proper scope nesting`` when one arrives in a device scope's exit); the
    interrupt is then still the cause of what happened. None when there is
    no interrupt. ``kind`` narrows the search (e.g. to SIGTERM's exception).
    """
    seen = error
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__context__
    return None
