"""Errors that a user can fix.

Every CLI turns a :class:`UserError` into one line on stderr and exit code 2
(see :mod:`convlstm_tl.cli`); anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, options or files.

    The message is a single line that says what is wrong and how to fix it.
    """


class DomainFileError(UserError):
    """A domain file is missing, corrupt, or does not follow the format."""


class ConfigError(UserError):
    """A configuration value or file is invalid."""


class RunError(UserError):
    """A run directory is missing, incomplete, or cannot be written."""


class Interrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the message says how to resume it."""
