"""Unsupervised pretraining: the ConvLSTM body as an autoencoder of a domain's frames.

For a domain with few labels but many unlabelled sequences, the body
(``block_1 .. block_K``, exactly as :func:`convlstm_tl.models.classifier.build_classifier`
builds it) is trained without labels to predict frames, through a small
decoder (``decoder_*`` layers) instead of the classifier head:

- ``next_frame``: the state after frames ``1..t`` predicts frame ``t+1``
  (the ConvLSTM future predictor of Srivastava et al. 2015);
- ``reconstruction``: the state after frames ``1..t`` reproduces frame ``t``.

Frames are compared after the model's own normalization (per-channel
z-scores), so the loss is in units of the data's variance: predicting the
channel means scores about 1. The run directory holds what a transfer needs
(``config.json`` with ``kind: "pretrain"``, the model config and the
normalization statistics, and ``model.keras`` with the named blocks), so
``python -m convlstm_tl.train --transfer T --from <run>`` restores its body
like a source run's.
"""

import logging
import time

import keras
import numpy as np

from convlstm_tl import backend
from convlstm_tl.config import OBJECTIVE_SHIFTS
from convlstm_tl.data.reader import iter_x
from convlstm_tl.data.sequence import FrameSequence
from convlstm_tl.data.stats import channel_stats
from convlstm_tl.jsonio import save_json
from convlstm_tl.models.autoencoder import build_autoencoder
from convlstm_tl.models.losses import FramePredictionLoss
from convlstm_tl.runs.directory import RunDirectory
from convlstm_tl.runs.record import make_run_record
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.training.fit import fit, write_history
from convlstm_tl.training.inputs import domain_record
from convlstm_tl.training.plans import plan_pretrain
from convlstm_tl.training.report import TrainResult, training_record

log = logging.getLogger(__name__)


def pretrain(config, *, info=None, verbose="auto"):
    """Train the body as a frame autoencoder on ``config.domain`` and write its run.

    Args:
        config: a :class:`convlstm_tl.config.PretrainConfig`.
        info: the domain's :class:`DomainInfo` if already validated.
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`convlstm_tl.training.source.TrainResult`; its metrics hold the test
        split's ``loss`` (mean squared error on normalized frames) next to the
        ``baseline_loss`` of a model that learnt nothing (the last frame again
        for ``next_frame``, the channel means for ``reconstruction``).

    Raises:
        UserError: see :func:`plan_pretrain`.
    """
    return run_pretrain(plan_pretrain(config, info=info), verbose=verbose)


def run_pretrain(plan, *, verbose="auto"):
    """Carry out a :class:`PretrainPlan`: train the autoencoder and write the run."""
    config, info = plan.config, plan.info
    shift = OBJECTIVE_SHIFTS[config.objective]
    with backend.seeded(config.seed):
        mean, variance = channel_stats(info.path, "train")
        model = build_autoencoder(config.model, frame_shape=info.frame_shape, mean=mean, variance=variance)
        # No class names: the run never saw labels, so it has no classes to keep.
        domain = {key: value for key, value in domain_record(info).items() if key != "class_names"}
        run_config = make_run_record("pretrain", config=config, model=config.model, domain=domain,
                                     model_inputs={"mean": mean, "variance": variance}, n_params=model.count_params())
        sequences = {split: FrameSequence(info.path, split, mean=mean, variance=variance, batch_size=config.batch_size,
                                          shuffle=split == "train", seed=config.seed)
                     for split in ("train", "val", "test")}
        with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume) as run:
            run.watch(info.path)
            run.save_config(run_config)
            model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=FramePredictionLoss(shift))
            fitted = fit(model, sequences["train"], sequences["val"], epochs=config.epochs, patience=config.patience,
                         verbose=verbose, checkpoint=Checkpoint.open(run.path))
            history, train_seconds = fitted.history, fitted.seconds
            start = time.perf_counter()
            loss = float(model.evaluate(sequences["test"], verbose=0, return_dict=True)["loss"])
            metrics = {
                "domain": info.domain,
                "objective": config.objective,
                "loss": loss,
                "baseline_loss": baseline_loss(info.path, "test", mean=mean, variance=variance, shift=shift),
                "baseline": "last frame again" if shift else "channel means",
                "n_test": info.split_sizes["test"],
                "train_seconds": round(train_seconds, 3),
                "eval_seconds": round(time.perf_counter() - start, 3),
                "epochs_run": len(next(iter(history.values()), [])),
                **training_record([fitted], batch_size=config.batch_size, monitor="val_loss"),
            }
            model.save(run.path / "model.keras")
            write_history(run.path / "history.csv", history)
            save_json(run.path / "metrics.json", metrics)
        log.info("pretrained %s on %s: test loss %.4f (baseline %.4f)", config.run_name, info.domain, loss,
                 metrics["baseline_loss"])
        return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


def baseline_loss(path, split, *, mean, variance, shift):
    """The loss of a predictor that learnt nothing, over a split (streamed).

    ``shift`` 1: each frame predicts the next as itself (persistence);
    ``shift`` 0: every frame is predicted as the channel means (0 after
    normalization). Averaged per sample, as :class:`FramePredictionLoss` is.
    """
    std = np.sqrt(np.where(np.asarray(variance) > 0, variance, 1.0))
    total, count = 0.0, 0
    for chunk in iter_x(path, split):
        z = (chunk.astype(np.float64) - mean) / std
        error = z[:, shift:] - z[:, :-shift] if shift else z
        total += float(np.square(error).mean(axis=(1, 2, 3, 4)).sum())
        count += len(z)
    return total / count
