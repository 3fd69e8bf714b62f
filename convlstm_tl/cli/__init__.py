"""The command lines, argparse only (parse, build a config, call the library, print), and their shared helpers.

The contract: a user mistake ends with exit code 2 and one line on stderr,
never a traceback.
"""

import argparse
import logging
import os
import signal
import sys
import threading

from convlstm_tl.errors import UserError, interrupt_in
from convlstm_tl.files import environment_problem
from convlstm_tl.quiet import held_native_stderr

EXIT_USER_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit code 2."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def import_backend_quietly():
    """Import Keras and start its backend with the backend's C++ logs silenced.

    TensorFlow writes start-up notices (oneDNN, CUDA probing) straight to file
    descriptor 2, before any Python logging setting applies. We park fd 2 in a
    temporary file while it starts, and replay what it wrote only if the
    import fails, so that stderr carries our own lines only.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with held_native_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
            # Its Python logger warns about tf.function retracing when a
            # command predicts with several models in turn (evaluate):
            # expected there, and not the user's to act on.
            tf.get_logger().setLevel(logging.ERROR)


# Config fields that every command line sets with the same flag (see run_main's flags).
COMMON_FLAGS = {"data_dir": "--data-dir", "runs_dir": "--runs-dir", "name": "--name", "overwrite": "--overwrite",
                "resume": "--resume"}

EXIT_SIGTERM = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds exactly as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_main(main, argv=None, *, prog, flags=None):
    """Call ``main(argv)`` and map a :class:`UserError` to exit code 2.

    SIGTERM (what schedulers and ``docker stop`` send) is handled like
    Ctrl-C: the work unwinds, a resumable state is kept, and the exit code
    is 143 (130 for Ctrl-C). An environment error (no space left, no
    permission) that no writer has reported is one line and exit code 2; a
    closed stdout (``| head``) ends quietly.

    Args:
        main: function taking ``argv`` and returning an exit code.
        argv: argument list, or None for ``sys.argv[1:]``.
        prog: program name used as the prefix of the error line.
        flags: ``{config field: command-line flag}``; an error about a field
            (``UserError.field``) then names the flag that sets it.

    Returns:
        The exit code: ``main``'s own, 2 for a user error, 130 on Ctrl-C,
        143 on SIGTERM.
    """
    previous = _install_sigterm_handler()
    try:
        return main(argv)
    except UserError as error:
        _error_line(prog, error, flags or {})
        return EXIT_USER_ERROR
    except KeyboardInterrupt as interrupt:
        return _interrupted(prog, interrupt)
    except BrokenPipeError:
        # The reader went away (``| head``): stop writing, without a traceback
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as error:
        if interrupt_in(error) is not None:
            return _interrupted(prog, interrupt_in(error))
        problem = environment_problem(error)
        if problem is None:
            raise
        print(f"{prog}: error: {problem}, then run again", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:
        # An interrupt that landed inside a library which raised an error of its own instead.
        if interrupt_in(error) is None:
            raise
        return _interrupted(prog, interrupt_in(error))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(prog, interrupt):
    """One line for an interrupt (an Interrupted says how to resume; a bare Ctrl-C has no message); its exit code."""
    print(f"{prog}: {' '.join(str(interrupt).split()) or 'interrupted'}", file=sys.stderr)
    return EXIT_SIGTERM if _terminated(interrupt) else 130


def _install_sigterm_handler():
    """Make SIGTERM raise :class:`Terminated`; returns the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _terminated(interrupt):
    """Whether the interrupt is a SIGTERM, also when a library re-raised it as another KeyboardInterrupt."""
    return interrupt_in(interrupt, Terminated) is not None


def _error_line(prog, error, flags):
    message = " ".join(str(error).split())
    fields = getattr(error, "field", None)
    fields = (fields,) if isinstance(fields, str) else fields or ()
    flags = {**COMMON_FLAGS, **flags}
    named = [flags[field] for field in fields if field in flags and flags[field].split()[0] not in message]
    if named:
        message += f" (option{'s' if len(named) > 1 else ''} {', '.join(named)})"
    print(f"{prog}: error: {message}", file=sys.stderr)


def configure_logging(quiet):
    """Log the library's INFO messages to stderr unless ``quiet``."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
