"""Holding back what native libraries write straight to file descriptor 2.

TensorFlow, TensorFlow Lite and the converters write notices (oneDNN, CUDA
probing, "Created TensorFlow Lite XNNPACK delegate") to fd 2 from C++, where
no Python logging setting reaches. A command's stderr should carry its own
lines only, so those are parked in a temporary file and replayed only when
the code they came with fails.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def held_native_stderr():
    """Send fd 2 to a temporary file inside the block; replay it on stderr if the block fails with an error."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except Exception:  # not on Ctrl-C or SIGTERM: an interrupt is one line of its own
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
