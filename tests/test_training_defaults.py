"""Defaults that adapt to the data: batch size, convergence, class weights, the monitored measure, refit."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import CLASS_NAMES, TinyDomain, make_splits, write_tiny
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig, resolve_batch_size
from convlstm_tl.data.sequence import ArraySequence, DomainSequence
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError, UserError
from convlstm_tl.training.fit import fit
from convlstm_tl.training.inputs import class_weights
from convlstm_tl.training.plans import plan_source, plan_transfer
from convlstm_tl.training.source import train_source
from convlstm_tl.training.transfer import transfer

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = ModelConfig(filters=(4,), head_units=8)


@pytest.mark.parametrize("n_train, batch", [(1, 1), (3, 2), (10, 5), (16, 8), (32, 8), (100, 8), (128, 16),
                                            (200, 16), (255, 16), (256, 32), (1000, 32), (10**6, 32)])
def test_batch_size_follows_the_training_set(n_train, batch):
    assert resolve_batch_size(None, n_train) == batch
    steps = -(-n_train // batch)
    assert steps >= min(8, 2 if n_train > 1 else 1) or batch == 8  # several steps an epoch where the set allows


def test_a_given_batch_size_is_kept():
    assert resolve_batch_size(64, 10) == 64


def test_plans_resolve_the_batch_size_from_the_training_data(tmp_path):
    domain = write_tiny(tmp_path / "data", sizes={"train": 40, "val": 12, "test": 12})
    plan = plan_source(TrainConfig(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(tmp_path)))
    assert plan.config.batch_size == resolve_batch_size(None, 40) == 8


def test_transfer_plan_sizes_the_batch_to_the_labelled_subset(tmp_path):
    domain = write_tiny(tmp_path / "data", sizes={"train": 300, "val": 30, "test": 30})
    source = train_source(TrainConfig(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(tmp_path / "r"),
                                      epochs=1, model=MODEL), verbose=0)
    assert source.metrics["batch_size"] == 32
    plan = plan_transfer(TransferConfig(target=domain.name, source_run=str(source.run_dir), target_per_class=5,
                                        data_dir=str(domain.data_dir), runs_dir=str(tmp_path / "r")))
    assert plan.config.batch_size == resolve_batch_size(None, len(plan.train_indices)) < 32


@pytest.mark.parametrize("field, value", [("monitor", "val_f1"), ("class_weight", "auto"), ("lr_schedule", "cosine"),
                                          ("refit", "yes"), ("batch_size", 0)])
def test_bad_training_choices_name_their_field(field, value):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(source="St", **{field: value}).validate()
    assert caught.value.field == field


def test_balanced_class_weights_average_to_one_over_the_samples():
    labels = np.array([0] * 8 + [1] * 2 + [3] * 10)
    weights = class_weights("balanced", labels, 4)
    np.testing.assert_allclose(weights, [20 / 24, 20 / 6, 0.0, 20 / 30])
    assert weights[labels].mean() == pytest.approx(1.0)
    assert class_weights("none", labels, 4) is None


def test_weighted_sequences_yield_each_samples_class_weight(tmp_path):
    domain = write_tiny(tmp_path / "data")
    weights = np.arange(1, 4, dtype=np.float32)
    x, y, w = DomainSequence(domain.path, "train", batch_size=8, class_weight=weights)[0]
    np.testing.assert_array_equal(w, weights[y])
    _, y, w = ArraySequence(np.zeros((5, 2)), np.array([0, 1, 2, 2, 1]), batch_size=5, class_weight=weights)[0]
    np.testing.assert_array_equal(w, weights[y])


def test_pooled_splits_hold_train_and_val_once_each(tmp_path):
    domain = write_tiny(tmp_path / "data")
    train = DomainSequence(domain.path, "train", batch_size=4, indices=[0, 2, 5])
    val = DomainSequence(domain.path, "val", batch_size=100)
    pooled = DomainSequence(domain.path, ("train", "val"), batch_size=100, indices=([0, 2, 5], None))
    x, y = pooled[0]
    np.testing.assert_array_equal(x, np.concatenate([train.read([0, 1, 2])[0], val[0][0]]))
    np.testing.assert_array_equal(y, np.concatenate([train.labels, val.labels]))
    shuffled = DomainSequence(domain.path, ("train", "val"), batch_size=5, indices=([0, 2, 5], None), shuffle=True,
                              seed=3)
    seen = np.concatenate([shuffled[i][0] for i in range(len(shuffled))])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, x))


# ------------------------------------------------ early stopping on the monitored measure, with scripted logs


class ScriptedValidation(keras.callbacks.Callback):
    """Overwrite each epoch's validation logs with given values (before early stopping reads them)."""

    def __init__(self, **series):
        super().__init__()
        self.series = series
        self.weights_at_end = []

    def on_epoch_end(self, epoch, logs=None):
        for name, values in self.series.items():
            logs[name] = values[epoch]
        self.weights_at_end.append(self.model.get_weights())


def _tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _arrays(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return ArraySequence(x, (x[:, 0] > 0).astype("int64"), batch_size=8, shuffle=True), ArraySequence(x, x[:, 0] > 0)


@pytest.mark.parametrize("monitor, best", [("val_loss", 2), ("val_accuracy", 4), ("val_macro_f1", 3)])
def test_the_monitored_measure_chooses_the_kept_epoch(monitor, best):
    scripted = ScriptedValidation(val_loss=[0.9, 0.5, 0.6, 0.7, 0.8], val_accuracy=[0.1, 0.2, 0.3, 0.9, 0.4],
                                  val_macro_f1=[0.1, 0.2, 0.8, 0.3, 0.4])
    model = _tiny_model()
    train, val = _arrays()
    result = fit(model, train, val, epochs=5, patience=0, monitor=monitor, callbacks=[scripted], verbose=0)
    assert result.best_epoch == best
    for kept, chosen in zip(model.get_weights(), scripted.weights_at_end[best - 1]):
        np.testing.assert_array_equal(kept, chosen)


def test_plateau_halves_the_learning_rate_when_the_measure_stalls():
    scripted = ScriptedValidation(val_loss=[0.5] + [0.6] * 7)
    train, val = _arrays()
    result = fit(_tiny_model(), train, val, epochs=8, patience=6, lr_schedule="plateau", callbacks=[scripted],
                 verbose=0)
    # patience 6: the rate halves after 2 stalled epochs, and again 2 later
    np.testing.assert_allclose(result.history["learning_rate"][:7], [1e-2] * 3 + [5e-3] * 2 + [2.5e-3] * 2)
    assert result.stopped_early and not result.still_improving


def test_a_budget_that_ends_while_improving_says_so():
    scripted = ScriptedValidation(val_loss=[0.9, 0.8, 0.7])
    train, val = _arrays()
    result = fit(_tiny_model(), train, val, epochs=3, patience=5, callbacks=[scripted], verbose=0)
    assert result.best_epoch == 3 and result.still_improving and not result.stopped_early


# ------------------------------------------------------------------------------ whole runs


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """A tiny domain whose training split is 80% class 0."""
    data_dir = tmp_path_factory.mktemp("imbalanced") / "data"
    splits = make_splits(sizes={"train": 60, "val": 15, "test": 15}, seed=1)
    train = splits["train"]
    train.y[:48] = 0
    train.x[:48, ..., 0] = train.x[:48, ..., 0] - train.x[:48, ..., 0].round()
    write_domain(data_dir / "Skewed.h5", splits, domain="Skewed", class_names=CLASS_NAMES, provenance="test")
    return TinyDomain(path=data_dir / "Skewed.h5", data_dir=data_dir, name="Skewed", splits=splits,
                      class_names=CLASS_NAMES)


def _run(domain, runs_dir, **overrides):
    values = dict(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(runs_dir), epochs=3, lr=1e-2,
                  model=MODEL, seed=0)
    return train_source(TrainConfig(**{**values, **overrides}), verbose=0)


@pytest.mark.slow
def test_class_weights_change_the_training_loss(imbalanced, tmp_path):
    plain = _run(imbalanced, tmp_path / "a", class_weight="none", epochs=1)
    weighted = _run(imbalanced, tmp_path / "b", class_weight="balanced", epochs=1)
    assert plain.history["loss"][0] != pytest.approx(weighted.history["loss"][0], rel=1e-4)
    assert plain.history["val_loss"][0] != weighted.history["val_loss"][0]  # other weights trained


@pytest.mark.slow
def test_refit_trains_on_train_and_val_for_the_chosen_epochs(imbalanced, tmp_path):
    validated = _run(imbalanced, tmp_path / "a", epochs=4, patience=0)
    refit = _run(imbalanced, tmp_path / "b", epochs=4, patience=0, refit=True)
    best = validated.metrics["best_epoch"]
    assert refit.metrics["refit"] == {"epochs": [best], "selected_epochs": [best], "samples": 60 + 15}
    assert refit.history == validated.history  # the validated fit is the same; the refit comes after it
    rows = (refit.run_dir / "refit_history.csv").read_text().splitlines()
    assert len(rows) == 1 + best and "val_loss" not in rows[0]
    assert not np.allclose(refit.model.get_weights()[0], validated.model.get_weights()[0])


@pytest.mark.slow
def test_cli_warns_once_when_the_budget_ends_while_improving(tmp_path):
    domain = write_tiny(tmp_path / "data")
    result = subprocess.run([sys.executable, "-m", "convlstm_tl.train", "--source", domain.name, "--data-dir",
                             str(domain.data_dir), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1",
                             "--filters", "4", "--head-units", "8", "--quiet"],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "still improving" in line]
    assert len(warnings) == 1 and "--epochs" in warnings[0]
    metrics = (tmp_path / "runs" / domain.name / "metrics.json").read_text()
    assert '"still_improving": true' in metrics


# ------------------------------------------------------------------------------ ensembles


@pytest.fixture(scope="module")
def ensemble_run(imbalanced, tmp_path_factory):
    return _run(imbalanced, tmp_path_factory.mktemp("ensemble"), epochs=2, ensemble=2)


@pytest.mark.slow
def test_an_ensemble_saves_the_average_of_its_members(ensemble_run, imbalanced):
    record = ensemble_run.metrics["ensemble"]
    assert record["members"] == 2 and [m["seed"] for m in record["member_scores"]] == [0, 1]
    x = imbalanced.splits["test"].x
    loaded = keras.saving.load_model(ensemble_run.run_dir / "model.keras")
    members = [loaded.get_layer(f"member_{k}").predict(x, verbose=0) for k in (1, 2)]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ensemble_run.model.predict(x, verbose=0), atol=1e-6)
    assert not np.allclose(members[0], members[1])  # other seeds, other models
    assert not any(p.name.startswith(".member") for p in ensemble_run.run_dir.iterdir())


@pytest.mark.slow
def test_a_transfer_refuses_an_ensemble_source_in_one_line(ensemble_run, imbalanced, tmp_path):
    config = TransferConfig(target=imbalanced.name, source_run=str(ensemble_run.run_dir),
                            data_dir=str(imbalanced.data_dir), runs_dir=str(tmp_path))
    with pytest.raises(UserError, match="is an ensemble of 2 models; a transfer needs one body"):
        plan_transfer(config)


@pytest.mark.slow
def test_a_transfer_ensemble_on_cached_features(imbalanced, tmp_path):
    source = _run(imbalanced, tmp_path / "source", epochs=1)
    result = transfer(TransferConfig(target=imbalanced.name, source_run=str(source.run_dir), strategy="freeze",
                                     data_dir=str(imbalanced.data_dir), runs_dir=str(tmp_path / "t"), epochs=2,
                                     ensemble=3, refit=True), verbose=0)
    assert result.metrics["feature_cache"] and result.metrics["ensemble"]["members"] == 3
    assert not [p for p in result.run_dir.iterdir() if p.name.startswith(".")]  # no working file left
    assert result.metrics["refit"]["samples"] == 60 + 15


@pytest.mark.slow
def test_refit_starts_from_the_validated_runs_initial_weights(imbalanced, tmp_path, monkeypatch):
    from convlstm_tl.training import source as source_module

    starts = []
    real_fit = source_module.fit

    def recording_fit(model, *args, **kwargs):
        starts.append([np.array(w) for w in model.get_weights()])
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(source_module, "fit", recording_fit)
    monkeypatch.setattr("convlstm_tl.training.fit.fit", recording_fit)
    _run(imbalanced, tmp_path, epochs=2, patience=0, refit=True)
    assert len(starts) == 2  # the validated fit, then the refit
    for validated, refit in zip(*starts):
        np.testing.assert_array_equal(validated, refit)
