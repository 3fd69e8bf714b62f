"""What only some Keras backends offer, kept in one place.

The rest of the library uses ``keras.*`` only; this module adapts to
TensorFlow when it is the backend and does nothing harmful otherwise.
"""

import logging

import keras

log = logging.getLogger(__name__)


def name():
    """The Keras backend in use: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.backend.backend()


def seed_everything(seed):
    """Seed Python, NumPy and the backend, and ask for deterministic kernels.

    On TensorFlow this also enables op determinism, so that the same seed
    gives the same weights and metrics on CPU.
    """
    keras.utils.set_random_seed(seed)
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def versions():
    """Versions of the packages that shape a run's results."""
    import h5py
    import numpy
    import sklearn

    found = {"keras": keras.__version__, "backend": name(), "numpy": numpy.__version__,
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
