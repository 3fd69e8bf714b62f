"""Tests of ``convlstm_tl.models.layers``: the fast ConvLSTM against ``keras.layers.ConvLSTM2D``."""

import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from convlstm_tl.compute import dtype_policy
from convlstm_tl.config import ModelConfig
from convlstm_tl.models.backbone import Backbone
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.models.layers import FastConvLSTM2D, convert_model, from_keras_convlstm, to_keras_convlstm

# (batch, T, H, W, C) and kernel: 1-D frames with (1, k) kernels, 2-D frames with (k, k).
CASES = [((3, 5, 1, 9, 2), (1, 3)), ((2, 4, 6, 5, 3), (3, 3))]
ATOL = 1e-5


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _randomize(layer, seed=1):
    """Move the weights off their initial values (the bias too), so a bad copy shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([w + rng.normal(0.0, 0.3, size=w.shape).astype(np.float32) for w in layer.get_weights()])


@pytest.mark.parametrize("shape, kernel", CASES)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_matches_stock_layer_with_its_weights(shape, kernel, return_sequences):
    x = _x(shape)
    stock = keras.layers.ConvLSTM2D(4, kernel, padding="same", return_sequences=return_sequences)
    stock.build(shape)
    _randomize(stock)
    fast = from_keras_convlstm(stock)
    assert isinstance(fast, FastConvLSTM2D)
    assert fast.kernel_size == kernel and fast.return_sequences == return_sequences
    np.testing.assert_allclose(_np(fast(x)), _np(stock(x)), rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape, kernel", CASES)
def test_converts_back_to_an_equal_stock_layer(shape, kernel):
    x = _x(shape)
    fast = FastConvLSTM2D(4, kernel)
    fast.build(shape)
    _randomize(fast)
    stock = to_keras_convlstm(fast)
    assert isinstance(stock, keras.layers.ConvLSTM2D)
    assert stock.padding == "same" and tuple(stock.kernel_size) == kernel
    np.testing.assert_allclose(_np(stock(x)), _np(fast(x)), rtol=0, atol=ATOL)
    for mine, theirs in zip(fast.get_weights(), stock.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_scan_loop_matches_unrolled_loop():
    shape, kernel = CASES[1]
    x = _x(shape)
    unrolled = FastConvLSTM2D(4, kernel, unroll=True)
    unrolled.build(shape)
    _randomize(unrolled)
    looped = FastConvLSTM2D(4, kernel, unroll=False)
    looped.build(shape)
    looped.set_weights(unrolled.get_weights())
    np.testing.assert_allclose(_np(looped(x)), _np(unrolled(x)), rtol=0, atol=ATOL)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="gradients taken with tf.GradientTape")
@pytest.mark.parametrize("shape, kernel", CASES)
def test_gradients_match_stock_layer(shape, kernel):
    import tensorflow as tf

    x = tf.constant(_x(shape))
    stock = keras.layers.ConvLSTM2D(3, kernel, padding="same", return_sequences=True)
    stock.build(shape)
    _randomize(stock)
    fast = from_keras_convlstm(stock)

    def gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    for mine, theirs in zip(gradients(fast), gradients(stock)):
        np.testing.assert_allclose(_np(mine), _np(theirs), rtol=1e-4, atol=1e-5)


def test_forget_bias_starts_at_one():
    layer = FastConvLSTM2D(3, (1, 3))
    layer.build((None, 4, 1, 6, 2))
    np.testing.assert_array_equal(_np(layer.bias), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    plain = FastConvLSTM2D(3, (1, 3), unit_forget_bias=False)
    plain.build((None, 4, 1, 6, 2))
    np.testing.assert_array_equal(_np(plain.bias), 0.0)


def test_shapes():
    inputs = keras.Input((7, 6, 5, 2))
    assert FastConvLSTM2D(4, 3)(inputs).shape == (None, 7, 6, 5, 4)
    assert FastConvLSTM2D(4, 3, return_sequences=False)(inputs).shape == (None, 6, 5, 4)
    layer = FastConvLSTM2D(4, (1, 3))
    layer.build((None, 7, 1, 5, 2))
    assert layer.kernel_size == (1, 3)
    assert tuple(layer.kernel.shape) == (1, 3, 2, 16)
    assert tuple(layer.recurrent_kernel.shape) == (1, 3, 4, 16)


@pytest.mark.parametrize("kwargs, match", [
    ({"filters": 0}, "filters"), ({"kernel_size": (1, 2, 3)}, "kernel_size"), ({"dropout": 1.0}, "dropout"),
])
def test_bad_arguments_say_what_was_received(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received"):
        FastConvLSTM2D(**{"filters": 2, "kernel_size": 3, **kwargs})


def test_stock_layers_it_cannot_compute_are_refused():
    stock = keras.layers.ConvLSTM2D(2, 3, padding="valid")
    with pytest.raises(ValueError, match="padding='same'. Received: padding='valid'"):
        from_keras_convlstm(stock)


def test_get_config_has_every_init_argument_and_round_trips():
    layer = FastConvLSTM2D(5, (1, 3), activation="relu", unit_forget_bias=False, recurrent_dropout=0.2, dropout=0.1,
                           seed=3, return_sequences=False, unroll=False, kernel_regularizer=keras.regularizers.L2(0.01),
                           name="convlstm")
    config = layer.get_config()
    arguments = set(inspect.signature(FastConvLSTM2D.__init__).parameters) - {"self", "kwargs"}
    assert arguments <= set(config)
    clone = FastConvLSTM2D.from_config(config)
    assert clone.get_config() == config
    assert clone.kernel_size == (1, 3) and clone.return_sequences is False and clone.unroll is False


def _dropout_layer(**kwargs):
    layer = FastConvLSTM2D(4, (1, 3), seed=7, **kwargs)
    layer.build((None, 6, 1, 9, 2))
    _randomize(layer)
    return layer


@pytest.mark.parametrize("kwargs", [{"dropout": 0.5}, {"recurrent_dropout": 0.5}])
def test_dropout_is_seeded_and_off_at_inference(kwargs):
    x = _x((3, 6, 1, 9, 2))
    layer, twin = _dropout_layer(**kwargs), _dropout_layer(**kwargs)
    twin.set_weights(layer.get_weights())
    plain = FastConvLSTM2D(4, (1, 3))
    plain.build((None, 6, 1, 9, 2))
    plain.set_weights(layer.get_weights())
    trained = _np(layer(x, training=True))
    np.testing.assert_array_equal(trained, _np(twin(x, training=True)))  # same seed, same masks
    assert not np.allclose(trained, _np(plain(x)), atol=1e-3)  # dropout acted
    np.testing.assert_array_equal(_np(layer(x, training=False)), _np(plain(x)))  # and is off at inference


def test_input_dropout_mask_is_the_same_at_every_step():
    # With no recurrent weights and a closed forget gate, h_t depends on x_t
    # alone; equal frames then give equal outputs only if the mask is too.
    layer = _dropout_layer(dropout=0.5)
    kernel, recurrent, bias = layer.get_weights()
    bias[4:8] = -100.0
    layer.set_weights([kernel, np.zeros_like(recurrent), bias])
    frame = _x((3, 1, 1, 9, 2))
    out = _np(layer(np.repeat(frame, 6, axis=1), training=True))
    for t in range(1, 6):
        np.testing.assert_allclose(out[:, t], out[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mixed_precision, dtype", [("float16", "float16"), ("bfloat16", "bfloat16")])
def test_mixed_precision_computes_low_and_keeps_float32_weights_and_softmax(mixed_precision, dtype):
    with dtype_policy(mixed_precision):
        layer = FastConvLSTM2D(3, (1, 3))
        model = build_classifier(ModelConfig(filters=(3,), head_units=4), frame_shape=(4, 1, 6, 2), n_classes=3,
                                 mean=np.zeros(2), variance=np.ones(2))
    assert keras.config.dtype_policy().name == "float32"  # restored
    x = _x((2, 4, 1, 6, 2))
    assert keras.backend.standardize_dtype(layer(x).dtype) == dtype
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights)
    probabilities = model(x)
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    np.testing.assert_allclose(_np(probabilities).sum(axis=1), 1.0, rtol=1e-3)


def test_saved_model_with_the_layer_reloads_and_predicts_the_same(tmp_path):
    inputs = keras.Input((5, 1, 9, 2))
    x = FastConvLSTM2D(4, (1, 3), recurrent_dropout=0.2, name="convlstm")(inputs)
    x = FastConvLSTM2D(3, (1, 3), return_sequences=False)(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    for layer in model.layers[1:3]:
        _randomize(layer)
    data = _x((4, 5, 1, 9, 2))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.get_layer("convlstm"), FastConvLSTM2D)
    np.testing.assert_allclose(reloaded.predict(data, verbose=0), model.predict(data, verbose=0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("frame_shape", [(4, 1, 8, 2), (4, 6, 6, 1)])
def test_convert_model_moves_a_stock_classifier_to_the_fast_layer_and_back(frame_shape):
    stock = build_classifier(ModelConfig(filters=(3, 2), head_units=5, cell="keras"), frame_shape=frame_shape,
                             n_classes=3, mean=np.zeros(frame_shape[-1]), variance=np.ones(frame_shape[-1]))
    for block in Backbone(stock).blocks:
        _randomize(block.get_layer("convlstm"))
    x = _x((3, *frame_shape))
    fast = convert_model(stock, to="fast")
    assert [layer.name for layer in fast.layers] == [layer.name for layer in stock.layers]
    assert all(isinstance(block.get_layer("convlstm"), FastConvLSTM2D) for block in Backbone(fast).blocks)
    np.testing.assert_allclose(_np(fast(x)), _np(stock(x)), rtol=0, atol=ATOL)
    back = convert_model(fast, to="keras")
    assert all(isinstance(block.get_layer("convlstm"), keras.layers.ConvLSTM2D) for block in Backbone(back).blocks)
    np.testing.assert_allclose(_np(back(x)), _np(stock(x)), rtol=0, atol=ATOL)


def test_stock_block_weights_load_into_a_fast_block():
    # Transfer copies block weights with set_weights; runs trained with the
    # stock layer must keep working as sources.
    kwargs = dict(frame_shape=(4, 1, 8, 2), n_classes=3, mean=np.zeros(2), variance=np.ones(2))
    stock = build_classifier(ModelConfig(filters=(3,), head_units=5, cell="keras"), **kwargs)
    fast = build_classifier(ModelConfig(filters=(3,), head_units=5), **kwargs)
    _randomize(stock.get_layer("block_1").get_layer("convlstm"))
    fast.set_weights(stock.get_weights())
    x = _x((2, 4, 1, 8, 2))
    np.testing.assert_allclose(_np(fast(x)), _np(stock(x)), rtol=0, atol=ATOL)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed; the backend-neutral check runs where it is (KERAS_BACKEND=jax)")
def test_classifier_runs_under_jax(tmp_path):
    script = textwrap.dedent("""
        import numpy as np
        import keras
        from convlstm_tl.config import ModelConfig
        from convlstm_tl.models.classifier import build_classifier
        assert keras.backend.backend() == "jax"
        model = build_classifier(ModelConfig(filters=(3, 2), head_units=4, recurrent_dropout=0.1),
                                 frame_shape=(4, 1, 6, 2), n_classes=3, mean=np.zeros(2), variance=np.ones(2))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x = np.random.rand(8, 4, 1, 6, 2).astype("float32")
        model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
        assert model.predict(x, verbose=0).shape == (8, 3)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
