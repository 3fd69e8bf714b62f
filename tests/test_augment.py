import numpy as np
import pytest

from convlstm_tl.config import AugmentConfig, ConfigError
from convlstm_tl.data.augment import augment_batch, spatial_shift, time_shift
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.data.writer import write_domain


def _batch(shape=(4, 5, 1, 6, 3), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_off_by_default_and_active_when_any_transform_is_set():
    assert not AugmentConfig().active
    assert AugmentConfig(jitter=0.1).active
    assert AugmentConfig(spatial_shift=1).active


@pytest.mark.parametrize("bad", [dict(scale=1.0), dict(scale=-0.1), dict(jitter=-1.0), dict(time_shift=1.0),
                                 dict(spatial_shift=-1)])
def test_validate_rejects_out_of_range(bad):
    with pytest.raises(ConfigError, match="Received"):
        AugmentConfig(**bad).validate()


def test_augment_keeps_shape_and_dtype_and_changes_values():
    x = _batch()
    config = AugmentConfig(scale=0.2, jitter=0.1, time_shift=0.2)
    out = augment_batch(x, config, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(out, x)


def test_augment_is_reproducible_from_the_generator_seed():
    x = _batch()
    config = AugmentConfig(scale=0.2, jitter=0.1, time_shift=0.2)
    a = augment_batch(x, config, np.random.default_rng(7))
    b = augment_batch(x, config, np.random.default_rng(7))
    c = augment_batch(x, config, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_time_shift_of_1d_frames_moves_along_the_flattened_series():
    # One sample whose value is its position in the flattened time series.
    steps, width = 4, 5
    x = np.arange(steps * width, dtype=np.float32).reshape(1, steps, 1, width, 1)

    class FixedShift:
        def integers(self, low, high, size):
            return np.array([3])

    out = time_shift(x, 0.5, FixedShift())
    series = out.reshape(-1)
    # Shifted right by 3 steps, the first value repeated at the edge.
    np.testing.assert_array_equal(series[:4], [0, 0, 0, 0])
    np.testing.assert_array_equal(series[3:], np.arange(steps * width - 3))


def test_spatial_shift_moves_frames_and_leaves_1d_frames_alone():
    x = np.zeros((1, 2, 5, 5, 1), dtype=np.float32)
    x[0, :, 2, 2, 0] = 1.0

    class FixedShift:
        def integers(self, low, high, size):
            return np.array([[1, -1]])

    out = spatial_shift(x, 1, FixedShift())
    assert out[0, 0, 3, 1, 0] == 1.0 and out.sum() == 2.0
    flat = _batch(shape=(2, 3, 1, 6, 2))
    np.testing.assert_array_equal(augment_batch(flat, AugmentConfig(spatial_shift=2), np.random.default_rng(0)), flat)


def test_domain_sequence_augments_training_batches_keeps_labels_and_is_off_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    splits = {name: SplitArrays(rng.normal(size=(8, 3, 1, 4, 2)).astype(np.float32), np.arange(8) % 2)
              for name in ("train", "val", "test")}
    path = write_domain(tmp_path / "d.h5", splits, domain="d", class_names=["a", "b"], provenance="test").path
    config = AugmentConfig(scale=0.3, jitter=0.2)
    augmented = DomainSequence(path, "train", batch_size=8, augment=config, seed=1)
    plain = DomainSequence(path, "train", batch_size=8)
    xa, ya = augmented[0]
    xp, yp = plain[0]
    np.testing.assert_array_equal(ya, yp)
    assert xa.shape == xp.shape and not np.allclose(xa, xp)
    # Same seed, epoch and batch: the same augmented batch.
    np.testing.assert_array_equal(DomainSequence(path, "train", batch_size=8, augment=config, seed=1)[0][0], xa)
    # An inactive config is no augmentation at all.
    np.testing.assert_array_equal(DomainSequence(path, "train", batch_size=8, augment=AugmentConfig())[0][0], xp)


def test_random_rotations_are_proper_rotations_within_the_angle():
    from convlstm_tl.data.augment import random_rotations

    rotations = random_rotations(50, 30.0, np.random.default_rng(0))
    for r in rotations:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
        assert np.isclose(np.linalg.det(r), 1.0)
        angle = np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))
        assert angle <= 30.0 + 1e-6


def test_rotation_turns_every_vector_group_of_a_sample_alike_and_keeps_norms():
    from convlstm_tl.data.augment import rotate_vectors

    x = _batch(shape=(3, 2, 1, 4, 6))
    out = rotate_vectors(x, 90.0, (), np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(out[..., :3], axis=-1), np.linalg.norm(x[..., :3], axis=-1), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[..., 3:], axis=-1), np.linalg.norm(x[..., 3:], axis=-1), rtol=1e-5)
    # One rotation per sample: solve R from the first group, it maps the second too.
    for i in range(3):
        a, b = x[i, ..., :3].reshape(-1, 3), out[i, ..., :3].reshape(-1, 3)
        r, *_ = np.linalg.lstsq(a, b, rcond=None)
        np.testing.assert_allclose(x[i, ..., 3:].reshape(-1, 3) @ r, out[i, ..., 3:].reshape(-1, 3), atol=1e-4)
    assert not np.allclose(out, x)


def test_rotation_leaves_channels_outside_the_groups_alone_and_refuses_bad_groups():
    from convlstm_tl.data.augment import rotate_vectors

    x = _batch(shape=(2, 2, 1, 3, 4))
    out = rotate_vectors(x, 45.0, (1, 2, 3), np.random.default_rng(0))
    np.testing.assert_array_equal(out[..., 0], x[..., 0])
    with pytest.raises(ValueError, match="groups of 3"):
        rotate_vectors(x, 45.0, (), np.random.default_rng(0))
    with pytest.raises(ConfigError):
        AugmentConfig(rotate=10, vector_channels=(0, 1)).validate()
