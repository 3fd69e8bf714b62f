"""Sliding windows cut into frames: the windowing shared by the time-series converters.

A recording ``(n_samples, C)`` becomes windows ``(N, window, C)`` that never
run past its end, and a window becomes ``frames`` frames of
``window // frames`` samples: one sample ``(frames, 1, window // frames, C)``.
"""

import numpy as np

from convlstm_tl.errors import UserError


def sliding_windows(signal, window, step):
    """Cut a multichannel signal into overlapping windows.

    Windows start at ``0, step, 2 * step, ...`` and a trailing part shorter
    than ``window`` is dropped, so every window holds real samples only.

    Args:
        signal: array of shape ``(n_samples, n_channels)``.
        window: samples per window, > 0.
        step: samples between the starts of consecutive windows, > 0.

    Returns:
        A new array of shape ``(n_windows, window, n_channels)`` with
        ``n_windows = (n_samples - window) // step + 1``, or 0 windows when
        the signal is shorter than ``window``.

    Example:

    >>> sliding_windows(np.arange(10).reshape(5, 2), window=2, step=2)[:, :, 0]
    array([[0, 2],
           [4, 6]])
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(f"signal must have shape (n_samples, n_channels). Received: shape={signal.shape}")
    if window <= 0 or step <= 0:
        raise ValueError(f"window and step must be > 0. Received: window={window}, step={step}")
    n_samples, n_channels = signal.shape
    if n_samples < window:
        return np.empty((0, window, n_channels), dtype=signal.dtype)
    # (n_samples - window + 1, n_channels, window): a view, copied once below.
    views = np.lib.stride_tricks.sliding_window_view(signal, window, axis=0)[::step]
    return np.ascontiguousarray(views.transpose(0, 2, 1))


def to_frames(windows, frames):
    """Reshape windows ``(N, window, C)`` into samples ``(N, frames, 1, window // frames, C)``.

    Frame ``t`` holds the window's samples ``t * W`` to ``(t + 1) * W - 1``
    (``W = window // frames``) in their original order; ``H == 1`` because a
    watch signal has no second spatial axis.

    Raises:
        ValueError: if ``window`` is not a multiple of ``frames``.
    """
    windows = np.asarray(windows)
    n, window, channels = windows.shape
    if frames <= 0 or window % frames:
        raise ValueError(f"window must be a multiple of frames. Received: window={window}, frames={frames}")
    return windows.reshape(n, frames, 1, window // frames, channels)


def window_step(window, overlap):
    """Return the step between windows: ``round(window * (1 - overlap))``."""
    return int(round(window * (1.0 - overlap)))


def check_window_options(window, overlap, frames):
    """Validate window, overlap and frames; return the step between windows.

    Raises:
        UserError: for a non-positive window or frames, an overlap outside
            ``[0, 1)``, a window that ``frames`` does not divide, or a step of 0.
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
        raise UserError(f"window must be a positive number of samples. Received: window={window!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames <= 0:
        raise UserError(f"frames must be a positive integer. Received: frames={frames!r}")
    if not 0.0 <= overlap < 1.0:
        raise UserError(f"overlap must be a fraction in [0, 1). Received: overlap={overlap!r}")
    if window % frames:
        raise UserError(
            f"window must be a multiple of frames so that every frame has the same width."
            f" Received: window={window}, frames={frames}"
        )
    step = window_step(window, overlap)
    if step < 1:
        raise UserError(
            f"overlap leaves a step of 0 samples between windows; lower it."
            f" Received: window={window}, overlap={overlap}"
        )
    return step
