"""Tests of ``convlstm_tl.models.adaptation`` (CORAL, MMD, gradient reversal, the alignment layer)
and ``convlstm_tl.training.adabn`` (BatchNorm statistics re-estimated on target data)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from convlstm_tl.config import ModelConfig
from convlstm_tl.models.adaptation import (
    DomainAlignment, GradientReversal, InformationMaximization, coral_loss, information_loss, mmd_loss,
)
from convlstm_tl.models.backbone import Backbone
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.training.adabn import adapt_batch_norm

FRAMES = (4, 1, 6, 3)
LOSSES = {"coral": coral_loss, "mmd": mmd_loss}


def _value(tensor):
    return float(keras.ops.convert_to_numpy(tensor))


def _features(rows=32, dims=5, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dims)).astype(np.float32)


def _classifier(filters=(4,)):
    return build_classifier(ModelConfig(filters=filters, head_units=5), frame_shape=FRAMES, n_classes=3,
                            mean=np.zeros(FRAMES[-1]), variance=np.ones(FRAMES[-1]))


def _target_frames(batches=3, batch=6, seed=1):
    # Scale and offset far from the untrained BatchNorm's (0, 1) statistics.
    rng = np.random.default_rng(seed)
    return [(3.0 + 4.0 * rng.normal(size=(batch, *FRAMES))).astype(np.float32) for _ in range(batches)]


# --- CORAL and MMD --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_loss_is_zero_for_identical_batches(method):
    source = _features()
    assert _value(LOSSES[method](source, source.copy())) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_loss_is_positive_and_grows_with_the_shift(method):
    source, target = _features(seed=0), _features(seed=1)
    # CORAL sees only covariances, so it is shifted by scaling; MMD also by moving the mean.
    shifted = [target * (1.0 + s) if method == "coral" else target + s for s in (0.5, 1.0, 2.0)]
    values = [_value(LOSSES[method](source, t)) for t in shifted]
    assert values[0] > 0
    assert values[0] < values[1] < values[2], values


def test_coral_ignores_the_order_of_rows_and_the_means():
    source, target = _features(seed=0), 2.0 * _features(rows=20, seed=1)
    expected = _value(coral_loss(source, target))
    permuted = target[np.random.default_rng(2).permutation(len(target))]
    assert _value(coral_loss(source[::-1], permuted)) == pytest.approx(expected, rel=1e-5)
    assert _value(coral_loss(source + 10.0, target)) == pytest.approx(expected, rel=1e-4)


def test_coral_matches_its_formula():
    source, target = _features(seed=0), 1.5 * _features(rows=12, seed=1)
    dims = source.shape[1]
    expected = np.sum(np.square(np.cov(source, rowvar=False) - np.cov(target, rowvar=False))) / (4 * dims ** 2)
    assert _value(coral_loss(source, target)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", sorted(LOSSES))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_losses_are_float32_for_low_precision_features(method, dtype):
    source = keras.ops.cast(_features(seed=0), dtype)
    target = keras.ops.cast(2.0 * _features(seed=1), dtype)
    value = LOSSES[method](source, target)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(_value(value)) and _value(value) > 0


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_losses_handle_single_rows_and_constant_batches(method):
    one = _features(rows=1)
    assert np.isfinite(_value(LOSSES[method](one, _features(rows=1, seed=1))))
    constant = np.ones((4, 5), dtype=np.float32)
    assert _value(LOSSES[method](constant, constant)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_losses_reject_features_of_different_widths(method):
    with pytest.raises(ValueError, match=r"Received: source.shape=\(8, 5\), target.shape=\(8, 4\)"):
        LOSSES[method](_features(rows=8), _features(rows=8, dims=4))


def test_mmd_bandwidth_gets_no_gradient_and_the_loss_gradient_is_finite():
    source = tf.Variable(_features(seed=0))
    target = tf.constant(_features(seed=1) + 1.0)
    with tf.GradientTape() as tape:
        value = mmd_loss(source, target)
    gradient = tape.gradient(value, source).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0


def test_mmd_rejects_non_positive_multipliers():
    with pytest.raises(ValueError, match=r"Received: bandwidth_multipliers=\(1.0, 0.0\)"):
        mmd_loss(_features(), _features(), bandwidth_multipliers=(1.0, 0.0))


# --- Gradient reversal ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_gradient_reversal_is_identity_forward_and_negates_the_gradient(scale):
    x = tf.Variable(_features(rows=4, dims=3))
    upstream = tf.constant(_features(rows=4, dims=3, seed=5))
    layer = GradientReversal(scale)
    with tf.GradientTape() as tape:
        y = layer(x)
        objective = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(objective, x).numpy(), -scale * upstream.numpy(), rtol=1e-6)


def test_gradient_reversal_config_round_trip_and_bad_scale():
    layer = GradientReversal.from_config(GradientReversal(0.5, name="reverse").get_config())
    assert layer.scale == 0.5 and layer.name == "reverse"
    with pytest.raises(ValueError, match=r"Received: scale=-1.0"):
        GradientReversal(-1.0)


# --- DomainAlignment ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["coral", "mmd", "dann"])
def test_alignment_adds_one_loss_in_training_only_and_passes_through(method):
    layer = DomainAlignment(method, weight=0.5, discriminator_units=8)
    passthrough = np.random.default_rng(3).random((6, 3)).astype(np.float32)
    source, target = _features(rows=6, dims=4, seed=0), 3.0 * _features(rows=5, dims=4, seed=1)
    output = layer([passthrough, source, target], training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(output), passthrough)
    assert len(layer.losses) == 1
    expected = 0.5 * _value(layer.term(source, target))
    assert _value(layer.losses[0]) == pytest.approx(expected, rel=1e-5)
    assert expected > 0
    output = layer([passthrough, source, target], training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(output), passthrough)
    assert layer.losses == []
    layer([passthrough, source, target])
    assert layer.losses == []


def test_alignment_term_matches_the_functions():
    source, target = _features(rows=6, seed=0), 2.0 * _features(rows=7, seed=1)
    for method, function in LOSSES.items():
        assert _value(DomainAlignment(method).term(source, target)) == pytest.approx(_value(function(source, target)))


def test_dann_discriminator_weights_belong_to_the_layer_and_get_gradients():
    layer = DomainAlignment("dann", weight=1.0, discriminator_units=8)
    source = tf.Variable(_features(rows=6, dims=4, seed=0))
    target = tf.constant(_features(rows=6, dims=4, seed=1) + 1.0)
    layer.build([(None, 3), (None, 4), (None, 4)])
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(4, 8), (8,), (8, 1), (1,)]
    with tf.GradientTape(persistent=True) as tape:
        term = layer.term(source, target)
    discriminator = tape.gradient(term, layer.trainable_weights)
    assert all(g is not None for g in discriminator)
    # Reversal: the features' gradient is minus what the discriminator's loss would give them.
    with tf.GradientTape() as plain_tape:
        features = tf.concat([source, target], axis=0)
        logits = layer.discriminator_logit(layer.discriminator_hidden(features))
        labels = tf.concat([tf.zeros((6, 1)), tf.ones((6, 1))], axis=0)
        plain = tf.reduce_mean(keras.losses.binary_crossentropy(labels, logits, from_logits=True))
    np.testing.assert_allclose(tape.gradient(term, source).numpy(), -plain_tape.gradient(plain, source).numpy(),
                               rtol=1e-5, atol=1e-7)
    assert _value(term) == pytest.approx(_value(plain), rel=1e-6)


@pytest.mark.parametrize("method", ["coral", "mmd", "dann"])
def test_alignment_config_round_trip(method):
    layer = DomainAlignment(method, weight=0.25, discriminator_units=16, name="align")
    config = layer.get_config()
    assert {key: config[key] for key in ("method", "weight", "discriminator_units")} == {
        "method": method, "weight": 0.25, "discriminator_units": 16}
    copy = DomainAlignment.from_config(config)
    assert (copy.method, copy.weight, copy.discriminator_units, copy.name) == (method, 0.25, 16, "align")
    assert keras.saving.get_registered_object("convlstm_tl>DomainAlignment") is DomainAlignment
    assert keras.saving.get_registered_object("convlstm_tl>GradientReversal") is GradientReversal


def test_alignment_keeps_float32_probabilities_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        features = keras.Input((4,))
        body = keras.layers.Dense(4)
        probabilities = keras.layers.Dense(3, activation="softmax", dtype="float32")(body(features))
        output = DomainAlignment("dann", 1.0)([probabilities, body(features), body(features)])
        model = keras.Model(features, output)
        assert model.output.dtype == "float32"
        x = _features(rows=6, dims=4)
        assert keras.backend.standardize_dtype(model(x, training=True).dtype) == "float32"
        assert [keras.backend.standardize_dtype(loss.dtype) for loss in model.losses] == ["float32"]
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kwargs, received", [
    ({"method": "kmm"}, "Received: method='kmm'"),
    ({"method": "coral", "weight": 0.0}, "Received: weight=0.0"),
    ({"method": "coral", "weight": -1}, "Received: weight=-1.0"),
    ({"method": "dann", "discriminator_units": 0}, "Received: discriminator_units=0"),
])
def test_alignment_rejects_bad_arguments(kwargs, received):
    with pytest.raises(ValueError, match=received):
        DomainAlignment(**kwargs)


@pytest.mark.slow
def test_alignment_model_trains_one_epoch_and_keeps_val_loss_plain():
    dims, classes = 4, 3
    frames_in = keras.Input((dims,), name="source")
    source_in = keras.Input((dims,), name="source_features")
    target_in = keras.Input((dims,), name="target_features")
    body = keras.layers.Dense(dims, name="body")
    probabilities = keras.layers.Dense(classes, activation="softmax", name="head")(body(frames_in))
    probabilities = DomainAlignment("coral", 1.0, name="align")([probabilities, body(source_in), body(target_in)])
    model = keras.Model([frames_in, source_in, target_in], probabilities)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, dims)).astype(np.float32)
    inputs = [x, x, 5.0 * rng.normal(size=(32, dims)).astype(np.float32)]
    y = rng.integers(0, classes, size=32)
    history = model.fit(inputs, y, validation_data=(inputs, y), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model(inputs, training=True)
    assert len(model.losses) == 1 and _value(model.losses[0]) > 0
    model(inputs, training=False)
    assert model.losses == []
    # Validation adds no term: val_loss is the classification loss alone.
    plain = keras.losses.SparseCategoricalCrossentropy()(y, model.predict(inputs, verbose=0))
    assert history.history["val_loss"][0] == pytest.approx(_value(plain), rel=1e-4)


def test_alignment_model_saves_and_reloads(tmp_path):
    source_in, target_in = keras.Input((4,)), keras.Input((4,))
    output = DomainAlignment("dann", 0.5, discriminator_units=6, name="align")([source_in, source_in, target_in])
    model = keras.Model([source_in, target_in], output)
    path = tmp_path / "aligned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("align")
    assert (layer.method, layer.weight, layer.discriminator_units) == ("dann", 0.5, 6)
    for saved, restored in zip(model.get_layer("align").weights, layer.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(restored))


# --- AdaBN ----------------------------------------------------------------------------------------------------------


def _convlstm_outputs(model, block, frames):
    """The ConvLSTM outputs of ``block`` on ``frames``, computed step by step from the model's layers."""
    outputs = []
    for x in frames:
        h = model.get_layer("normalize")(x)
        for layer in Backbone(model).blocks:
            if layer.name == block:
                break
            h = layer(h, training=False)
        outputs.append(keras.ops.convert_to_numpy(model.get_layer(block).get_layer("convlstm")(h)))
    flat = np.concatenate(outputs).astype(np.float64)
    return flat.reshape(-1, flat.shape[-1])


def _weights(model):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}


def test_information_loss_rewards_confident_and_diverse_predictions():
    k = 4
    diverse = np.eye(k, dtype=np.float32)  # one-hot, every class once
    collapsed = np.tile(np.eye(k, dtype=np.float32)[:1], (k, 1))  # one-hot, all one class
    uniform = np.full((k, k), 1 / k, dtype=np.float32)
    values = [float(information_loss(p)) for p in (diverse, collapsed, uniform)]
    assert values[0] == pytest.approx(-np.log(k), abs=1e-4)
    assert values[1] == pytest.approx(0.0, abs=1e-4)
    assert values[2] == pytest.approx(0.0, abs=1e-4)
    assert values[0] < min(values[1:])


def test_information_maximization_adds_its_loss_in_training_or_when_asked():
    probabilities = keras.ops.convert_to_tensor(np.eye(3, dtype=np.float32))
    passthrough = keras.ops.ones((3, 2))
    for in_validation, training, expected in ((False, True, 1), (False, False, 0), (True, False, 1)):
        layer = InformationMaximization(0.5, in_validation=in_validation)
        out = layer([passthrough, probabilities], training=training)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), 1.0)
        assert len(layer.losses) == expected
        if expected:
            assert float(layer.losses[0]) == pytest.approx(-0.5 * np.log(3), abs=1e-4)
    assert InformationMaximization.from_config(InformationMaximization(2.0).get_config()).weight == 2.0
    with pytest.raises(ValueError, match="Received: weight=0"):
        InformationMaximization(0)


def test_adabn_changes_only_the_moving_statistics_to_the_exact_moments():
    model = _classifier()
    frames = _target_frames()
    before = _weights(model)
    summary = adapt_batch_norm(model, frames)
    after = _weights(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed == {"block_1/batch_norm/moving_mean", "block_1/batch_norm/moving_variance"}
    outputs = _convlstm_outputs(model, "block_1", frames)
    batch_norm = model.get_layer("block_1").get_layer("batch_norm")
    np.testing.assert_allclose(after["block_1/batch_norm/moving_mean"], outputs.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(batch_norm.moving_variance), outputs.var(axis=0),
                               rtol=1e-5, atol=1e-7)
    assert set(summary) == {"block_1"}
    assert summary["block_1"]["mean_shift"] == pytest.approx(np.mean(np.abs(outputs.mean(axis=0))), rel=1e-5)
    assert summary["block_1"]["variance_ratio"] == pytest.approx(np.mean(outputs.var(axis=0)), rel=1e-5)


def test_adabn_adapts_later_blocks_after_earlier_ones():
    model = _classifier(filters=(4, 3))
    frames = _target_frames(batches=2)
    # What block 2 would see with block 1 still at its initial statistics.
    stale = _convlstm_outputs(model, "block_2", frames)
    before = _weights(model)
    summary = adapt_batch_norm(model, frames)
    after = _weights(model)
    assert {path for path in before if not np.array_equal(before[path], after[path])} == {
        f"block_{k}/batch_norm/{name}" for k in (1, 2) for name in ("moving_mean", "moving_variance")}
    fresh = _convlstm_outputs(model, "block_2", frames)
    np.testing.assert_allclose(after["block_2/batch_norm/moving_mean"], fresh.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after["block_2/batch_norm/moving_variance"], fresh.var(axis=0), rtol=1e-5, atol=1e-7)
    # Block 1's adaptation moved block 2's input, so stale statistics would differ.
    assert not np.allclose(stale.mean(axis=0), fresh.mean(axis=0), rtol=1e-3, atol=1e-4)
    assert list(summary) == ["block_1", "block_2"]


def test_adabn_reads_sequences_and_ignores_labels():
    model, reference = _classifier(), _classifier()
    reference.set_weights(model.get_weights())
    frames = _target_frames(batches=2)
    adapt_batch_norm(model, frames)

    class Labelled(keras.utils.PyDataset):
        def __len__(self):
            return len(frames)

        def __getitem__(self, index):
            return frames[index], np.full(len(frames[index]), -1)

    adapt_batch_norm(reference, Labelled())
    for ours, theirs in zip(model.weights, reference.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), rtol=1e-6)


def test_adabn_rejects_empty_frames():
    with pytest.raises(ValueError, match=r"Received: len\(frames\)=0"):
        adapt_batch_norm(_classifier(), [])
