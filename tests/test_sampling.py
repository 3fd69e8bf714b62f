"""Tests of ``convlstm_tl.data.subsets`` (``subsample``, ``labelled_subset``) and of target subsampling in
``transfer()``."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import convlstm_tl.training.transfer as transfer_module
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.reader import read_labels
from convlstm_tl.data.stats import channel_stats
from convlstm_tl.data.subsets import labelled_subset, subsample
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError
from convlstm_tl.training.source import train_source

N_CLASSES = 4
UNITS_PER_CLASS = 10
SEEDS = range(5)
CHOICES = [{"fraction": 0.1}, {"fraction": 0.3}, {"fraction": 0.5}, {"fraction": 0.9}, {"per_class": 3},
           {"per_class": 10}]


def _units(seed=0, *, string_ids=False):
    """Labels and unit ids of units of 1..5 samples, one label per unit, in shuffled sample order."""
    rng = np.random.default_rng(seed)
    labels, units = [], []
    for label in range(N_CLASSES):
        for _ in range(UNITS_PER_CLASS):
            size = int(rng.integers(1, 6))
            labels += [label] * size
            units += [len(set(units))] * size
    order = rng.permutation(len(labels))
    labels, units = np.array(labels)[order], np.array(units)[order]
    if string_ids:
        units = np.array([f"rec-{u:03d}" for u in units])
    return labels, units


def _chosen_units(units, indices):
    return set(np.unique(units[indices]).tolist())


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("seed", SEEDS)
def test_never_splits_a_unit(choice, seed):
    labels, units = _units()
    indices = subsample(labels, units, seed=seed, **choice)
    chosen = np.isin(units, units[indices])
    # Every sample of every chosen unit is in, and nothing else.
    assert np.array_equal(np.flatnonzero(chosen), indices)


def test_string_unit_ids_are_kept_whole():
    labels, units = _units(string_ids=True)
    indices = subsample(labels, units, fraction=0.4, seed=1)
    assert np.array_equal(np.flatnonzero(np.isin(units, units[indices])), indices)
    _, numeric = _units()
    assert np.array_equal(indices, subsample(labels, numeric, fraction=0.4, seed=1))


def test_returns_sorted_unique_indices_in_range():
    labels, units = _units()
    indices = subsample(labels, units, fraction=0.5, seed=0)
    assert indices.dtype.kind == "i"
    assert np.array_equal(indices, np.unique(indices))
    assert 0 <= indices.min() and indices.max() < len(labels)


@pytest.mark.parametrize("choice", CHOICES)
def test_same_seed_same_subset(choice):
    labels, units = _units()
    assert np.array_equal(subsample(labels, units, seed=7, **choice), subsample(labels, units, seed=7, **choice))


@pytest.mark.parametrize("choice", [{"fraction": 0.5}, {"per_class": 10}])
def test_different_seeds_differ(choice):
    labels, units = _units()
    subsets = {tuple(subsample(labels, units, seed=seed, **choice)) for seed in SEEDS}
    assert len(subsets) == len(SEEDS)


@pytest.mark.parametrize("choice", [{"fraction": 0.01}, {"fraction": 0.3}, {"per_class": 1}, {"per_class": 4}])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_class_is_present(choice, seed):
    labels, units = _units()
    indices = subsample(labels, units, seed=seed, **choice)
    assert set(labels[indices].tolist()) == set(range(N_CLASSES))


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("seed", SEEDS)
def test_fraction_is_respected_per_class_within_one_unit(fraction, seed):
    labels, units = _units()
    indices = subsample(labels, units, fraction=fraction, seed=seed)
    for label in range(N_CLASSES):
        in_class = labels == label
        largest = np.bincount(np.unique(units[in_class], return_inverse=True)[1]).max()
        kept = int((labels[indices] == label).sum())
        assert abs(kept - fraction * in_class.sum()) <= largest, (label, kept, in_class.sum())
    assert abs(len(indices) - fraction * len(labels)) <= 0.1 * len(labels)


@pytest.mark.parametrize("per_class", [2, 6, 12])
@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_is_respected_within_one_unit(per_class, seed):
    labels, units = _units()
    indices = subsample(labels, units, per_class=per_class, seed=seed)
    for label in range(N_CLASSES):
        kept = int((labels[indices] == label).sum())
        assert abs(kept - per_class) <= 5  # the largest unit holds 5 samples
        assert kept >= min(per_class, 1)


def test_per_class_beyond_a_class_takes_all_of_it():
    labels, units = _units()
    assert np.array_equal(subsample(labels, units, per_class=10_000, seed=0), np.arange(len(labels)))


@pytest.mark.parametrize("seed", SEEDS)
def test_without_units_each_sample_is_its_own_unit(seed):
    labels = np.arange(160) % N_CLASSES  # 40 per class
    by_fraction = subsample(labels, None, fraction=0.25, seed=seed)
    assert np.bincount(labels[by_fraction], minlength=N_CLASSES).tolist() == [10] * N_CLASSES
    by_count = subsample(labels, per_class=7, seed=seed)
    assert np.bincount(labels[by_count], minlength=N_CLASSES).tolist() == [7] * N_CLASSES
    assert np.array_equal(by_fraction, subsample(labels, fraction=0.25, seed=seed))
    assert not np.array_equal(by_fraction, subsample(labels, fraction=0.25, seed=seed + 100))


def test_a_unit_follows_its_majority_label_and_stays_whole():
    labels = np.array([0, 0, 1, 1, 1, 0, 1])
    units = np.array([5, 5, 5, 6, 6, 7, 8])
    # unit 5 is mostly class 0; taking it takes its class-1 sample too.
    for seed in SEEDS:
        indices = subsample(labels, units, per_class=1, seed=seed)
        for unit in np.unique(units[indices]):
            assert set(np.flatnonzero(units == unit)) <= set(indices.tolist())


@pytest.mark.parametrize("kwargs", [{}, {"fraction": 0.5, "per_class": 3}])
def test_needs_exactly_one_of_fraction_and_per_class(kwargs):
    with pytest.raises(ConfigError, match="exactly one"):
        subsample(np.zeros(4, dtype=int), **kwargs)


# --------------------------------------------------------- through transfer


TARGET_RECORDINGS = (1, 2, 3, 4, 2, 3)  # recording sizes per class: 15 samples per class


def _frames(y, rng):
    x = rng.normal(0.0, 0.3, size=(len(y), 4, 1, 8, 2)).astype(np.float32)
    x[..., 0] += y[:, None, None, None]
    return x


def _write_domains(data_dir):
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    source = {"train": SplitArrays(_frames(y, rng), y)}
    for split in ("val", "test"):
        source[split] = SplitArrays(_frames(np.arange(9) % 3, rng), np.arange(9) % 3)
    write_domain(data_dir / "Src.h5", source, domain="Src", class_names=["a", "b", "c"], provenance="test")

    y, recording = [], []
    for label in range(N_CLASSES):
        for size in TARGET_RECORDINGS:
            recording += [len(set(recording))] * size
            y += [label] * size
    y, recording = np.array(y), np.array(recording)
    order = rng.permutation(len(y))
    y, recording = y[order], recording[order]
    # Groups are coarser than recordings: subsampling must take recordings.
    target = {"train": SplitArrays(_frames(y, rng), y, group=recording % 4, recording=recording)}
    for offset, split in ((10, "val"), (20, "test")):
        labels = np.arange(8) % N_CLASSES
        target[split] = SplitArrays(_frames(labels, rng), labels, group=offset + np.arange(8) % 2,
                                    recording=1000 * offset + np.arange(8))
    write_domain(data_dir / "Tgt.h5", target, domain="Tgt", class_names=["w", "x", "y", "z"], provenance="test")
    return recording, recording % 4


# --------------------------------------------------------- labelled_subset of a domain file


def _write_grouped(path):
    """A domain whose train split carries the units of ``_units()`` as group ids, and no recordings."""
    labels, units = _units(seed=3)
    rng = np.random.default_rng(3)
    splits = {"train": SplitArrays(_frames(labels, rng), labels, group=units)}
    for offset, split in ((1000, "val"), (2000, "test")):
        y = np.arange(8) % N_CLASSES
        splits[split] = SplitArrays(_frames(y, rng), y, group=offset + np.arange(8))
    write_domain(path, splits, domain="Grouped", class_names=["w", "x", "y", "z"], provenance="test")
    return labels, units


def test_labelled_subset_without_options_is_the_whole_train_split(tmp_path):
    labels, _ = _write_grouped(tmp_path / "G.h5")
    indices, n_total = labelled_subset(tmp_path / "G.h5", seed=5)
    assert n_total == len(labels)
    assert np.array_equal(indices, np.arange(len(labels)))
    with pytest.raises(ConfigError, match="exactly one"):
        labelled_subset(tmp_path / "G.h5", fraction=0.5, per_class=3)


@pytest.mark.parametrize("choice", [{"fraction": 0.3}, {"fraction": 0.6}, {"per_class": 4}])
def test_labelled_subset_keeps_whole_groups(tmp_path, choice):
    labels, units = _write_grouped(tmp_path / "G.h5")
    indices, n_total = labelled_subset(tmp_path / "G.h5", seed=2, **choice)
    assert n_total == len(labels) and 0 < len(indices) < len(labels)
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[indices] = True
    for group in np.unique(units):
        assert len(set(chosen[units == group].tolist())) == 1  # the whole group is in, or none of it
    # It is subsample() of the file's labels and groups, with the same seed.
    assert np.array_equal(indices, subsample(labels, units, seed=2, **choice))


def test_labelled_subset_takes_recordings_before_groups(tmp_path):
    recordings, groups = _write_domains(tmp_path)
    labels, _ = read_labels(tmp_path / "Tgt.h5", "train")
    indices, n_total = labelled_subset(tmp_path / "Tgt.h5", fraction=0.5, seed=3)
    assert n_total == len(labels)
    assert np.array_equal(indices, subsample(labels, recordings, fraction=0.5, seed=3))
    assert not np.array_equal(indices, subsample(labels, groups, fraction=0.5, seed=3))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    data_dir = root / "data"
    recordings, groups = _write_domains(data_dir)
    config = TrainConfig(source="Src", data_dir=str(data_dir), runs_dir=str(root / "runs"), epochs=1,
                         batch_size=16, patience=0, model=ModelConfig(filters=(4,), head_units=8))
    result = train_source(config, verbose=0)
    return {"root": root, "data_dir": data_dir, "run": result.run_dir, "recordings": recordings, "groups": groups}


@pytest.mark.slow
@pytest.mark.parametrize("choice, seed", [({"target_fraction": 0.5}, 3), ({"target_per_class": 4}, 7)])
def test_transfer_trains_on_and_records_the_subsample(source_run, monkeypatch, choice, seed):
    sizes = []

    def recording_fit(model, train, val, **kwargs):
        sizes.append(len(train.y))  # the cached features of the chosen samples
        return real_fit(model, train, val, **kwargs)

    real_fit = transfer_module.fit
    monkeypatch.setattr(transfer_module, "fit", recording_fit)
    config = TransferConfig(target="Tgt", source_run=str(source_run["run"]), data_dir=str(source_run["data_dir"]),
                            runs_dir=str(source_run["root"] / f"runs-{seed}"), epochs=1, batch_size=16, seed=seed,
                            patience=0, strategy="freeze", **choice)
    result = transfer_module.transfer(config, verbose=0)
    recorded = json.loads((result.run_dir / "config.json").read_text())

    path = Path(source_run["data_dir"]) / "Tgt.h5"
    labels, _ = read_labels(path, "train")
    fraction, per_class = choice.get("target_fraction"), choice.get("target_per_class")
    expected = subsample(labels, source_run["recordings"], fraction=fraction, per_class=per_class, seed=seed)
    by_group = subsample(labels, source_run["groups"], fraction=fraction, per_class=per_class, seed=seed)
    assert not np.array_equal(expected, by_group)  # so the check below tells recordings from groups
    assert recorded["target_samples"] == {"n": len(expected), "of": len(labels), "indices": expected.tolist()}
    assert len(expected) < len(labels)
    assert sizes == [len(expected)] and result.metrics["feature_cache"] is True
    # The default normalization uses the chosen training samples only.
    mean, _ = channel_stats(path, "train", indices=expected)
    np.testing.assert_allclose(recorded["normalization"]["mean"], mean, rtol=1e-6)
    layer_mean = np.ravel(keras.ops.convert_to_numpy(result.model.get_layer("normalize").mean))
    np.testing.assert_allclose(layer_mean, mean, rtol=1e-6)
    assert not np.allclose(mean, channel_stats(path, "train")[0], rtol=1e-4, atol=0)
