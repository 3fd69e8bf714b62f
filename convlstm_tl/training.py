"""Training a classifier on a domain and writing its run directory."""

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from convlstm_tl import augment, backend
from convlstm_tl.config import save_json, to_dict
from convlstm_tl.dataset import DomainSequence
from convlstm_tl.domain import channel_stats, find_domain, open_domain
from convlstm_tl.inference import predict_split
from convlstm_tl.metrics import classification_metrics, classification_report_text
from convlstm_tl.model import build_classifier
from convlstm_tl.plots import save_confusion_matrix
from convlstm_tl.runs import RunDirectory, check_run_target

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: the finished run directory.
        metrics: test metrics (the contents of ``metrics.json``).
        history: per-epoch values, ``{name: [value per epoch]}``.
        model: the trained model (best weights).
    """

    run_dir: Path
    metrics: dict
    history: dict
    model: keras.Model


def train_source(config, *, info=None, verbose="auto"):
    """Train a ConvLSTM classifier on ``config.source`` and write its run.

    Args:
        config: a :class:`convlstm_tl.config.TrainConfig`.
        info: the source's :class:`DomainInfo` if the caller validated the
            file already (skips a second scan of a large file).
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`TrainResult`.

    Raises:
        UserError: for a missing or invalid domain file, bad options, or a
            run directory that exists or cannot be written.
    """
    config.validate()
    if info is None:
        info = open_domain(find_domain(config.source, config.data_dir or None))
    path = info.path
    check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite)
    augment.check_fits(config.augment, info.frame_shape[-1])
    backend.seed_everything(config.seed)

    mean, variance = channel_stats(path, "train")
    model = build_classifier(
        config.model, frame_shape=info.frame_shape, n_classes=info.n_classes, mean=mean, variance=variance
    )
    run_config = {
        "kind": "source",
        "config": to_dict(config),
        "domain": {"name": info.domain, "path": str(path), "class_names": list(info.class_names),
                   "frame_shape": list(info.frame_shape), "split_sizes": info.split_sizes},
        "normalization": {"mean": mean.tolist(), "variance": variance.tolist()},
        "n_params": int(model.count_params()),
        "versions": backend.versions(),
    }
    with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite) as run:
        save_json(run.path / "config.json", run_config)
        model.compile(
            optimizer=keras.optimizers.Adam(config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        train = DomainSequence(path, "train", batch_size=config.batch_size, shuffle=True, seed=config.seed,
                               augment=config.augment)
        val = DomainSequence(path, "val", batch_size=config.batch_size)
        history, train_seconds = fit(model, train, val, epochs=config.epochs, patience=config.patience,
                                     verbose=verbose)
        metrics = evaluate_and_save(model, path, info, run.path, run_name=config.run_name, history=history,
                                    train_seconds=train_seconds, batch_size=config.batch_size)
    return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


def fit(model, train, val, *, epochs, patience, verbose="auto", callbacks=()):
    """Fit, keeping the weights of the epoch with the lowest validation loss.

    ``patience`` epochs without improvement stop training early; 0 turns
    early stopping off but still restores the best epoch's weights, so a run
    always saves its best model.

    Returns:
        ``(history, seconds)``: the per-epoch history dict and the wall time.
    """
    callbacks = [*callbacks, keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience or epochs, restore_best_weights=True, verbose=0)]
    start = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    return {name: [float(v) for v in values] for name, values in history.history.items()}, seconds


def evaluate_and_save(model, path, info, run_path, *, run_name, history, train_seconds, batch_size, extra=None):
    """Score ``model`` on the test split and write the run's result files.

    Writes ``model.keras``, ``history.csv``, ``metrics.json``, ``report.txt``
    and ``confusion_matrix.png`` into ``run_path``. ``extra`` entries are
    added to the metrics.

    Returns:
        The metrics dict.
    """
    start = time.perf_counter()
    y_true, y_pred, _ = predict_split(model, path, "test", batch_size=max(batch_size, 128))
    eval_seconds = time.perf_counter() - start
    metrics = classification_metrics(y_true, y_pred, info.class_names, domain=info.domain)
    metrics["train_seconds"] = round(train_seconds, 3)
    metrics["eval_seconds"] = round(eval_seconds, 3)
    metrics["epochs_run"] = len(next(iter(history.values()), []))
    metrics.update(extra or {})

    run_path = Path(run_path)
    model.save(run_path / "model.keras")
    write_history(run_path / "history.csv", history)
    save_json(run_path / "metrics.json", metrics)
    (run_path / "report.txt").write_text(
        f"domain {info.domain}, test split, {len(y_true)} samples\n\n"
        + classification_report_text(y_true, y_pred, info.class_names)
    )
    save_confusion_matrix(metrics["confusion_matrix"], info.class_names, run_path / "confusion_matrix.png",
                          title=f"{run_name} on {info.domain} (test)")
    return metrics


def write_history(path, history):
    """Write ``{name: [per-epoch values]}`` as a CSV with an ``epoch`` column."""
    names = list(history)
    epochs = len(history[names[0]]) if names else 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *names])
        for epoch in range(epochs):
            writer.writerow([epoch + 1, *(f"{history[name][epoch]:.6g}" for name in names)])
