"""What only some Keras backends offer, kept in one place.

The rest of the library uses ``keras.*`` only; this module adapts to
TensorFlow when it is the backend and does nothing harmful otherwise.
"""

import contextlib
import logging
import random

import keras
import numpy as np

log = logging.getLogger(__name__)


def name():
    """The Keras backend in use: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.backend.backend()


@contextlib.contextmanager
def seeded(seed):
    """Within the block, random numbers come from ``seed`` and kernels are deterministic; after it, as before.

    Keras' global seed is set (weights' initializers, dropout); the global
    Python and NumPy random states, which ``keras.utils.set_random_seed``
    also sets, are put back when the block ends, and so is TensorFlow's op
    determinism, which makes the same seed give the same weights and metrics
    on CPU. A run seeds itself without changing its caller's random state.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    determinism = _op_determinism()
    keras.utils.set_random_seed(seed)
    _set_op_determinism(True)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        _set_op_determinism(determinism)


def _op_determinism():
    """TensorFlow's op-determinism switch, or None where it cannot be read (another backend)."""
    switch = _determinism_switch()
    return None if switch is None else switch.is_op_determinism_enabled()


def _set_op_determinism(enabled):
    switch = _determinism_switch()
    if enabled is None or switch is None:
        return
    if enabled:
        switch.enable_op_determinism()
    else:
        switch.disable_op_determinism()


def _determinism_switch():
    # TensorFlow exports only enable_op_determinism; reading and undoing it
    # live beside it in tensorflow.python.framework.config.
    if name() != "tensorflow":
        return None
    try:
        from tensorflow.python.framework import config
    except ImportError:
        return None
    needed = ("enable_op_determinism", "disable_op_determinism", "is_op_determinism_enabled")
    return config if all(hasattr(config, attribute) for attribute in needed) else None


def versions():
    """Versions of the packages that shape a run's results."""
    import h5py
    import numpy
    import sklearn

    from convlstm_tl import __version__

    found = {"convlstm_tl": __version__, "keras": keras.__version__, "backend": name(), "numpy": numpy.__version__,
             "h5py": h5py.__version__, "scikit-learn": sklearn.__version__}
    if name() == "tensorflow":
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    elif name() == "jax":
        import jax

        found["jax"] = jax.__version__
    elif name() == "torch":
        import torch

        found["torch"] = torch.__version__
    return found
