"""Shared fixtures: tiny synthetic domain files written with ``write_domain``.

The synthetic data carries a learnable signal (the mean of channel 0 is the
class id), so a model trained for a few epochs scores above chance, and its
groups (recordings) are split by group, so no id leaks across splits.
"""

import os
from dataclasses import dataclass
from pathlib import Path

# Quiet TensorFlow's C++ start-up notices in the test log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.writer import write_domain

CLASS_NAMES = ("walk", "run", "sit")
SPLIT_SIZES = {"train": 48, "val": 12, "test": 12}
FRAMES_1D = (4, 1, 8, 2)
FRAMES_2D = (4, 6, 6, 1)
# Groups (recording ids) per split: disjoint, each split has several.
GROUPS = {"train": range(0, 6), "val": range(6, 8), "test": range(8, 10)}


@dataclass
class TinyDomain:
    """A domain file written for a test, with the arrays it holds."""

    path: Path
    data_dir: Path
    name: str
    splits: dict
    class_names: tuple

    @property
    def frame_shape(self):
        return self.splits["train"].x.shape[1:]


def make_splits(frame_shape=FRAMES_1D, *, sizes=None, n_classes=len(CLASS_NAMES), seed=0, string_groups=False):
    """Arrays of the three splits; channel 0 of class ``c`` has mean ``c``.

    Labels cycle through the classes so every split holds every class.
    """
    sizes = sizes or SPLIT_SIZES
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in sizes.items():
        y = np.arange(n) % n_classes
        x = rng.normal(0.0, 0.3, size=(n, *frame_shape)).astype(np.float32)
        x[..., 0] += y[:, None, None, None]
        ids = np.array(list(GROUPS[name]))
        group = ids[np.arange(n) % len(ids)]
        if string_groups:
            group = np.array([f"subject-{g}" for g in group])
        splits[name] = SplitArrays(x=x, y=y.astype(np.int64), group=group)
    return splits


def write_tiny(data_dir, name="Tiny", frame_shape=FRAMES_1D, **kwargs):
    """Write a tiny domain ``<data_dir>/<name>.h5`` and describe it."""
    data_dir = Path(data_dir)
    splits = make_splits(frame_shape, **kwargs)
    path = data_dir / f"{name}.h5"
    write_domain(path, splits, domain=name, class_names=CLASS_NAMES, provenance="synthetic test data")
    return TinyDomain(path=path, data_dir=data_dir, name=name, splits=splits, class_names=CLASS_NAMES)


@pytest.fixture
def tiny_domain(tmp_path):
    """A tiny 1-D domain (frames ``(4, 1, 8, 2)``) in ``tmp_path/data``."""
    return write_tiny(tmp_path / "data")


@pytest.fixture
def tiny_domain_2d(tmp_path):
    """A tiny 2-D domain (frames ``(4, 6, 6, 1)``) in ``tmp_path/data``."""
    return write_tiny(tmp_path / "data", name="Tiny2d", frame_shape=FRAMES_2D)


@pytest.fixture(scope="session")
def shared_domain(tmp_path_factory):
    """A tiny 1-D domain shared by the training tests (read only)."""
    return write_tiny(tmp_path_factory.mktemp("shared") / "data")


def data_prep_error_line(argv, capsys):
    """Run ``python -m data_prep ARGV`` in-process; assert exit 2 with exactly one stderr line, and return it."""
    from data_prep.__main__ import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m data_prep") and "Traceback" not in captured.err, \
        captured.err
    return lines[0]
