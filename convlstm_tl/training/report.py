"""What a training run returns, and scoring a trained classifier on its test split into the run's result files."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from convlstm_tl.evaluation.metrics import classification_metrics, classification_report_text
from convlstm_tl.evaluation.plots import save_confusion_matrix
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.jsonio import save_json
from convlstm_tl.training.fit import write_history

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


def training_record(fitted, *, batch_size, monitor, refit=None, refit_samples=None):
    """The ``metrics.json`` entries that say how training ended, and one warning line if it ended too soon.

    Args:
        fitted: the :class:`~convlstm_tl.training.fit.FitResult` of each
            validated phase, in order; the last one decides convergence.
            Empty for a run that trained nothing.
        batch_size: the batch size trained with (given or derived).
        monitor: the validation measure early stopping watched.
        refit: the refit phases' results, if the run refitted on train + val.
        refit_samples: how many labelled samples the refit trained on.
    """
    if not fitted:  # nothing trained (adabn without target labels)
        return {"batch_size": int(batch_size), "monitor": None, "best_epoch": 0, "stopped_early": False,
                "still_improving": False}
    last = fitted[-1]
    entries = {"batch_size": int(batch_size), "monitor": monitor, "best_epoch": last.best_epoch,
               "stopped_early": last.stopped_early, "still_improving": last.still_improving}
    if last.still_improving:
        log.warning(f"the budget of {last.epochs} epochs ran out while {monitor} was still improving (best at"
                    f" epoch {last.best_epoch}); more --epochs would likely help")
    if refit is not None:
        entries["refit"] = {"epochs": [result.epochs for result in refit],
                            "selected_epochs": [result.best_epoch for result in fitted], "samples": int(refit_samples)}
    return entries
