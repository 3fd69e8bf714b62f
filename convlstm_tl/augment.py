"""Augmentation of frame sequences, applied to training batches only.

Each transform takes a batch ``(B, T, H, W, C)`` and a NumPy generator and
returns a new batch of the same shape; labels never change. The generator is
seeded from ``(seed, epoch, batch)`` by the dataset, so augmented training is
as reproducible as plain training.
"""

import numpy as np


def augment_batch(x, config, rng):
    """Apply the augmentations of ``config`` to a batch ``(B, T, H, W, C)``.

    Args:
        x: the batch.
        config: a :class:`convlstm_tl.config.AugmentConfig`.
        rng: a ``numpy.random.Generator``.
    """
    x = np.asarray(x, dtype=np.float32)
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
