"""Tests of ``convlstm_tl.models.classifier``: shapes, layer names, kernels, normalization, saving."""

import keras
import numpy as np
import pytest

from convlstm_tl.config import ModelConfig
from convlstm_tl.models.backbone import Backbone, block_name
from convlstm_tl.models.classifier import build_classifier, kernel_for

FRAMES_1D = (4, 1, 8, 2)
FRAMES_2D = (4, 6, 6, 1)
HEAD = ["head_pool", "head_dense", "head_dropout", "head_softmax"]


def _small(**overrides):
    return ModelConfig(**{"filters": (3, 2), "head_units": 5, **overrides})


def _build(config=None, frame_shape=FRAMES_1D, n_classes=3, mean=None, variance=None):
    channels = frame_shape[-1]
    return build_classifier(
        config or _small(),
        frame_shape=frame_shape,
        n_classes=n_classes,
        mean=np.zeros(channels) if mean is None else mean,
        variance=np.ones(channels) if variance is None else variance,
    )


def _inputs(frame_shape, batch=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *frame_shape)).astype(np.float32)


@pytest.mark.parametrize("frame_shape, n_classes", [(FRAMES_1D, 3), (FRAMES_2D, 4)])
def test_output_shape_and_probabilities(frame_shape, n_classes):
    model = _build(frame_shape=frame_shape, n_classes=n_classes)
    assert model.input_shape == (None, *frame_shape)
    assert model.output_shape == (None, n_classes)
    probabilities = keras.ops.convert_to_numpy(model(_inputs(frame_shape), training=False))
    assert probabilities.shape == (5, n_classes)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_layer_names_are_the_contract():
    model = _build(_small(filters=(3, 2, 2)))
    names = [layer.name for layer in model.layers]
    assert names == ["frames", "normalize", "block_1", "block_2", "block_3", *HEAD]
    assert [block.name for block in Backbone(model).blocks] == ["block_1", "block_2", "block_3"]
    assert [layer.name for layer in Backbone(model).head_layers] == HEAD
    assert block_name(4) == "block_4"
    # Every block keeps the sequence, so the body can be cut after any block.
    for block in Backbone(model).blocks:
        assert block.output.shape[:2] == (None, FRAMES_1D[0])
    assert [block.get_layer("convlstm").filters for block in Backbone(model).blocks] == [3, 2, 2]


@pytest.mark.parametrize("frame_shape, kernel", [(FRAMES_1D, (1, 5)), (FRAMES_2D, (5, 5))])
def test_kernel_is_1_by_k_for_1d_frames_else_k_by_k(frame_shape, kernel):
    assert kernel_for(frame_shape, 5) == kernel
    model = _build(_small(kernel_size=5), frame_shape=frame_shape)
    for block in Backbone(model).blocks:
        convlstm = block.get_layer("convlstm")
        assert tuple(convlstm.kernel_size) == kernel
        assert tuple(convlstm.kernel.shape[:2]) == kernel


def test_blocks_without_pool_or_dropout_by_default():
    block = _build().get_layer("block_1")
    assert [layer.name for layer in block.layers] == ["convlstm", "batch_norm"]


@pytest.mark.parametrize("frame_shape, pooled", [(FRAMES_1D, (1, 4)), (FRAMES_2D, (3, 3))])
def test_pool_and_dropout_layers(frame_shape, pooled):
    model = _build(_small(pool_size=2, block_dropout=0.2), frame_shape=frame_shape)
    for block in Backbone(model).blocks:
        assert [layer.name for layer in block.layers] == ["convlstm", "batch_norm", "pool", "dropout"]
        assert block.get_layer("dropout").rate == pytest.approx(0.2)
    # H == 1 frames are pooled along W only.
    assert tuple(model.get_layer("block_1").output.shape[2:4]) == pooled
    assert model.output_shape == (None, 3)


def test_normalization_applies_given_mean_and_variance():
    mean = np.array([3.0, -2.0], dtype=np.float32)
    variance = np.array([4.0, 0.25], dtype=np.float32)
    model = _build(mean=mean, variance=variance)
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    at_mean = np.broadcast_to(mean, (2, *FRAMES_1D)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalize(at_mean)), 0.0, atol=1e-5)
    one_sd = at_mean + np.sqrt(variance)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalize(one_sd)), 1.0, atol=1e-3)


def test_constant_channel_is_centred_not_scaled():
    model = _build(mean=[1.0, 2.0], variance=[0.0, 1.0])
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    x = np.full((1, *FRAMES_1D), 5.0, dtype=np.float32)
    out = keras.ops.convert_to_numpy(normalize(x))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[..., 0], 4.0, atol=1e-2)
    np.testing.assert_allclose(out[..., 1], 3.0, atol=1e-2)


def test_l2_regularizes_kernels():
    assert _build(_small(l2=0.0)).losses == []
    assert len(_build(_small(l2=1e-3)).losses) > 0


def test_frame_shape_must_have_four_dims():
    with pytest.raises(ValueError, match="frame_shape must be"):
        build_classifier(_small(), frame_shape=(4, 8, 2), n_classes=3, mean=[0, 0], variance=[1, 1])


@pytest.mark.parametrize("frame_shape", [FRAMES_1D, FRAMES_2D])
def test_save_and_reload_gives_identical_predictions(tmp_path, frame_shape):
    channels = frame_shape[-1]
    model = _build(_small(pool_size=2, block_dropout=0.1), frame_shape=frame_shape,
                   mean=np.full(channels, 0.5), variance=np.full(channels, 2.0))
    x = _inputs(frame_shape, batch=4, seed=1)
    # Move every weight off its initial value (BatchNorm statistics too), so all must be saved.
    rng = np.random.default_rng(2)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight) + rng.normal(0.0, 0.2, size=weight.shape)
        if weight.path.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        weight.assign(value.astype(np.float32))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded.get_layer("normalize").mean).ravel(), 0.5, rtol=1e-6)


def test_token_model_starts_with_an_embedding():
    model = build_classifier(_small(embedding_dim=7), frame_shape=(3, 1, 5, 1), n_classes=4, vocab_size=11)
    names = [layer.name for layer in model.layers]
    assert "embedding" in names and "normalize" not in names
    assert names.index("embedding") < names.index(block_name(1))
    assert model.get_layer("embedding").output.shape == (None, 3, 1, 5, 7)
    assert model.get_layer("embedding").get_weights()[0].shape == (11, 7)
    # (1, k) kernels: a sentence is a 1-D frame of word vectors.
    assert tuple(Backbone(model).blocks[0].get_layer("convlstm").kernel_size) == (1, 3)
    ids = np.random.default_rng(0).integers(0, 11, size=(2, 3, 1, 5, 1)).astype("int32")
    assert model.predict(ids, verbose=0).shape == (2, 4)


def test_token_model_needs_one_id_per_frame_position():
    with pytest.raises(ValueError, match=r"\(T, 1, W, 1\)"):
        build_classifier(_small(), frame_shape=(3, 2, 5, 1), n_classes=4, vocab_size=11)


def test_frames_need_statistics():
    with pytest.raises(ValueError, match="mean and variance"):
        build_classifier(_small(), frame_shape=FRAMES_1D, n_classes=3)


@pytest.mark.parametrize("frame_shape", [FRAMES_1D, FRAMES_2D])
def test_the_head_on_pooled_body_features_is_the_model(frame_shape):
    """The feature cache keeps pooled vectors: body_pooled then head(pooled=True) must compute the model."""
    model = _build(frame_shape=frame_shape)
    backbone = Backbone(model)
    x = np.random.default_rng(0).normal(size=(5, *frame_shape)).astype("float32")
    features = backbone.body_pooled().predict(x, verbose=0)
    assert features.shape == (5, backbone.blocks[-1].get_layer("convlstm").filters)
    head = backbone.head(features.shape[1:], pooled=True)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert "head_pool" not in [layer.name for layer in head.layers]
