"""Augmentation of frame sequences, applied to training batches only.

Each transform takes a batch ``(B, T, H, W, C)`` and a NumPy generator and
returns a new batch of the same shape; labels never change. The generator is
seeded from ``(seed, epoch, batch)`` by the dataset, so augmented training is
as reproducible as plain training.
"""

import numpy as np

from convlstm_tl.errors import ConfigError


def augment_batch(x, config, rng):
    """Apply the augmentations of ``config`` to a batch ``(B, T, H, W, C)``.

    Args:
        x: the batch.
        config: a :class:`convlstm_tl.config.AugmentConfig`.
        rng: a ``numpy.random.Generator``.
    """
    x = np.asarray(x, dtype=np.float32)
    if config.rotate:
        x = rotate_vectors(x, config.rotate, config.vector_channels, rng)
    if config.time_shift:
        x = time_shift(x, config.time_shift, rng)
    if config.spatial_shift and x.shape[2] > 1:
        x = spatial_shift(x, config.spatial_shift, rng)
    if config.scale:
        x = x * rng.uniform(1 - config.scale, 1 + config.scale, size=(x.shape[0], 1, 1, 1, x.shape[-1]))
    if config.jitter:
        std = x.std(axis=(1, 2, 3), keepdims=True)
        x = x + rng.normal(size=x.shape) * (config.jitter * std)
    return x.astype(np.float32)


def check_fits(config, n_channels):
    """Refuse a rotation whose vector channels do not fit ``n_channels``."""
    if not config.rotate:
        return
    channels = list(config.vector_channels) or list(range(n_channels))
    if len(channels) % 3 or max(channels) >= n_channels:
        raise ConfigError(
            f"augment rotate turns 3-D vectors, but the frames have {n_channels} channels;"
            f" give vector_channels in groups of 3 below {n_channels}."
            f" Received: vector_channels={tuple(config.vector_channels) or 'all'}",
            field=("rotate", "vector_channels"),
        )


def random_rotations(n, max_degrees, rng):
    """``n`` rotation matrices about uniformly random axes, by angles uniform in
    ``[-max_degrees, max_degrees]`` (Rodrigues' formula)."""
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=(n, 1, 1)))
    cross = np.zeros((n, 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    cross -= cross.transpose(0, 2, 1)
    return np.eye(3) + np.sin(angles) * cross + (1 - np.cos(angles)) * cross @ cross


def rotate_vectors(x, max_degrees, vector_channels, rng):
    """Rotate every 3-D vector channel group of a sample by one random rotation.

    Sensors fixed to one body (an accelerometer and a gyroscope in one watch)
    turn together when the device sits differently on another person, so all
    groups of a sample share its rotation.

    Args:
        x: batch ``(B, T, H, W, C)``.
        max_degrees: largest rotation angle.
        vector_channels: channel indices taken 3 at a time; empty means all
            channels in order, which then must be a multiple of 3.
        rng: a ``numpy.random.Generator``.
    """
    channels = list(vector_channels) or list(range(x.shape[-1]))
    if len(channels) % 3 or max(channels) >= x.shape[-1]:
        raise ValueError(f"rotation needs channels in groups of 3 within the {x.shape[-1]} channels."
                         f" Received: vector_channels={tuple(vector_channels)}")
    rotations = random_rotations(x.shape[0], max_degrees, rng).astype(np.float32)
    out = x.copy()
    for start in range(0, len(channels), 3):
        group = channels[start:start + 3]
        out[..., group] = np.einsum("b...j,bij->b...i", x[..., group], rotations)
    return out


def time_shift(x, max_fraction, rng):
    """Shift each sample along time, repeating the edge values.

    For 1-D frames (``H == 1``) time runs through the frames and on along
    each frame's width (frame ``t`` holds steps ``t*W .. (t+1)*W - 1``), so
    the shift is in steps of that flattened series; otherwise in whole frames.
    """
    batch, steps, height, width, channels = x.shape
    flat = height == 1
    series = x.reshape(batch, steps * width, channels) if flat else x
    length = series.shape[1]
    limit = int(max_fraction * length)
    out = np.empty_like(series)
    for i, shift in enumerate(rng.integers(-limit, limit + 1, size=batch)):
        positions = np.clip(np.arange(length) - shift, 0, length - 1)
        out[i] = series[i, positions]
    return out.reshape(x.shape)


def spatial_shift(x, max_pixels, rng):
    """Shift each sample's frames by up to ``max_pixels`` in H and W, repeating edges."""
    _, _, height, width, _ = x.shape
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(-max_pixels, max_pixels + 1, size=(x.shape[0], 2))):
        rows = np.clip(np.arange(height) - dy, 0, height - 1)
        cols = np.clip(np.arange(width) - dx, 0, width - 1)
        out[i] = x[i][:, rows][:, :, cols]
    return out
