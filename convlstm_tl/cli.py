"""Helpers shared by the command-line entry points.

The contract: a user mistake ends with exit code 2 and one line on stderr,
never a traceback.
"""

import argparse
import logging
import os
import sys
import tempfile

from convlstm_tl.errors import UserError

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
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()
                # Its Python logger warns about tf.function retracing when a
                # command predicts with several models in turn (evaluate):
                # expected there, and not the user's to act on.
                tf.get_logger().setLevel(logging.ERROR)
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_main(main, argv=None, *, prog):
    """Call ``main(argv)`` and map a :class:`UserError` to exit code 2.

    Args:
        main: function taking ``argv`` and returning an exit code.
        argv: argument list, or None for ``sys.argv[1:]``.
        prog: program name used as the prefix of the error line.

    Returns:
        The exit code: ``main``'s own, 2 for a user error, 130 on Ctrl-C.
    """
    try:
        return main(argv)
    except UserError as error:
        message = " ".join(str(error).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as interrupt:
        # An Interrupted says how to resume; a bare Ctrl-C has no message.
        print(f"{prog}: {' '.join(str(interrupt).split()) or 'interrupted'}", file=sys.stderr)
        return 130


def configure_logging(quiet):
    """Log the library's INFO messages to stderr unless ``quiet``."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
