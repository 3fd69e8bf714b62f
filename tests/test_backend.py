"""Tests of ``convlstm_tl.backend``: seeding a run without changing its caller's random state."""

import random

import keras
import numpy as np

from convlstm_tl import backend


def _weights(seed):
    with backend.seeded(seed):
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        return keras.ops.convert_to_numpy(layer.kernel)


def test_seeded_repeats_weights_and_restores_the_callers_random_state():
    random.seed(123)
    np.random.seed(456)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(456)
    first, again, other = _weights(7), _weights(7), _weights(8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert (random.random(), np.random.random()) == expected


def test_seeded_restores_op_determinism():
    before = backend._op_determinism()
    with backend.seeded(0):
        assert backend._op_determinism() in (True, None)
    assert backend._op_determinism() == before
