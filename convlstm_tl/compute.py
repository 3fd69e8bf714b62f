"""How a model computes: mixed precision and XLA, as run options.

``--mixed-precision`` and ``--jit`` of ``python -m convlstm_tl.train`` (and
the ``mixed_precision`` / ``jit`` fields of the train and transfer configs)
map to Keras settings here, in one place.

Mixed precision sets Keras' global dtype policy while a model is built, so
its layers compute in float16 or bfloat16 and keep float32 variables; the
softmax of the head is float32 in any case (``dtype="float32"``), and Keras
wraps the optimizer in a ``LossScaleOptimizer`` under ``mixed_float16``. The
policy is global state, so :func:`dtype_policy` restores the previous one on
exit: a run never leaks its policy into the next one (or into other tests).
"""

import contextlib

import keras

# Defaults (in convlstm_tl.config): mixed precision off, jit auto, by
# measurement on the 2-core CPU (TensorFlow 2.21, watch frames T=10 1x25x6,
# batch 32, 2 x 32 filters, FastConvLSTM2D, variants alternated in one
# process), train / predict sequences/s:
#   float32 282 / 488, float16 115 / 500, bfloat16 27 / 329 (no native
#   half-precision convolutions on this CPU), XLA (jit on) 201 / 726, and its
#   warm-up (tracing, compiling, one fit and one predict) took 109 s, not 38 s.
# On a GPU, "auto" already turns XLA on; mixed precision is for GPUs.
# --mixed-precision value -> Keras dtype policy.
MIXED_PRECISION_POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# --jit value -> jit_compile of model.compile. "auto" is Keras' own choice:
# XLA on with JAX and on TensorFlow with a GPU, off on TensorFlow on CPU only.
JIT_MODES = {"auto": "auto", "on": True, "off": False}


@contextlib.contextmanager
def dtype_policy(mixed_precision):
    """Set the global dtype policy for ``mixed_precision`` inside the block.

    Args:
        mixed_precision: ``"off"``, ``"float16"`` or ``"bfloat16"``.

    Example:

    >>> with dtype_policy("bfloat16"):
    ...     model = build_classifier(...)   # layers compute in bfloat16
    """
    if mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(f"mixed_precision must be one of {tuple(MIXED_PRECISION_POLICIES)}."
                         f" Received: mixed_precision={mixed_precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED_PRECISION_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def jit_compile(jit):
    """The ``jit_compile`` argument of ``model.compile`` for a ``--jit`` value."""
    if jit not in JIT_MODES:
        raise ValueError(f"jit must be one of {tuple(JIT_MODES)}. Received: jit={jit!r}")
    return JIT_MODES[jit]
