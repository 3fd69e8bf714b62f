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
import math
import time

import keras
import numpy as np
from keras import ops

from convlstm_tl import backend
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.config import save_json, to_dict
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.data.format import channel_stats, find_domain, iter_x, open_domain
from convlstm_tl.errors import ConfigError
from convlstm_tl.models.classifier import block_name, build_classifier
from convlstm_tl.runs.directory import RunDirectory, check_run_target
from convlstm_tl.training.source import TrainResult, fit, write_history

log = logging.getLogger(__name__)

DECODER_PREFIX = "decoder_"
# How many steps ahead each objective predicts.
SHIFTS = {"next_frame": 1, "reconstruction": 0}


@keras.saving.register_keras_serializable(package="convlstm_tl")
class FramePredictionLoss(keras.losses.Loss):
    """Mean squared error between predicted frames and the true frames ``shift`` steps later.

    The prediction at step ``t`` is compared with the target at ``t + shift``;
    the last ``shift`` predictions have nothing to predict and are left out.

    Args:
        shift: steps ahead (1: next frame, 0: the same frame).
        name: the loss's name.
        **kwargs: other ``keras.losses.Loss`` arguments.
    """

    def __init__(self, shift=1, name="frame_prediction_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.shift = int(shift)

    def call(self, y_true, y_pred):
        if self.shift:
            y_pred, y_true = y_pred[:, :-self.shift], y_true[:, self.shift:]
        return ops.mean(ops.square(ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")), axis=(1, 2, 3, 4))

    def get_config(self):
        return {**super().get_config(), "shift": self.shift}


class FrameSequence(keras.utils.PyDataset):
    """Batches ``(frames, normalized frames)`` of a split: the autoencoder's inputs and targets.

    Wraps a :class:`~convlstm_tl.data.sequence.DomainSequence` (labels unused) and
    keeps its seeded per-epoch order.

    Args:
        path: the domain file.
        split: the split.
        mean: per-channel mean ``(C,)`` the targets are normalized with.
        variance: per-channel variance ``(C,)``.
        **kwargs: ``batch_size``, ``shuffle``, ``seed`` of ``DomainSequence``.
    """

    def __init__(self, path, split, *, mean, variance, **kwargs):
        super().__init__()
        self.frames = DomainSequence(path, split, with_labels=False, **kwargs)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.sqrt(np.where(np.asarray(variance) > 0, variance, 1.0)).astype(np.float32)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        x = np.asarray(self.frames[index], dtype=np.float32)
        return x, (x - self.mean) / self.std

    def on_epoch_end(self):
        self.frames.on_epoch_end()

    def set_epoch(self, epoch):
        """Put the sequence in the state it has at the start of ``epoch``."""
        self.frames.set_epoch(epoch)


def build_autoencoder(config, *, frame_shape, mean, variance, name="convlstm_autoencoder"):
    """The classifier's body (``normalize``, ``block_1..K``) with a frame decoder on top.

    The decoder undoes the blocks' spatial pooling (upsampling, then cropping
    to the frame size) and maps the last block's features to the frame's
    channels with a convolution over space, one frame at a time.

    Args:
        config: a :class:`convlstm_tl.config.ModelConfig` (head settings unused).
        frame_shape: ``(T, H, W, C)``.
        mean: per-channel mean of the training frames.
        variance: per-channel variance of the training frames.
        name: the model's name.

    Returns:
        An uncompiled model from frames ``(B, T, H, W, C)`` to predicted
        normalized frames of the same shape.
    """
    steps, height, width, channels = (int(d) for d in frame_shape)
    # The body is built by the classifier's own code; its head is left unused.
    classifier = build_classifier(config, frame_shape=frame_shape, n_classes=1, mean=mean, variance=variance)
    x = classifier.get_layer(block_name(config.n_blocks)).output
    _, _, rows, cols, _ = x.shape
    if (rows, cols) != (height, width):
        x = keras.layers.UpSampling3D((1, math.ceil(height / rows), math.ceil(width / cols)),
                                      name=f"{DECODER_PREFIX}upsample")(x)
        x = keras.layers.Cropping3D(((0, 0), (0, x.shape[2] - height), (0, x.shape[3] - width)),
                                    name=f"{DECODER_PREFIX}crop")(x)
    kernel = (1, 1 if height == 1 else config.kernel_size, config.kernel_size)
    outputs = keras.layers.Conv3D(channels, kernel, padding="same", dtype="float32",
                                  name=f"{DECODER_PREFIX}frames")(x)
    return keras.Model(classifier.inputs, outputs, name=name)


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
        UserError: for a missing or invalid domain file, a token domain, bad
            options, or a run directory that exists or cannot be written.
    """
    config.validate()
    if info is None:
        info = open_domain(find_domain(config.domain, config.data_dir or None))
    if info.kind != "frames":
        raise ConfigError(f"pretraining predicts frames, but {info.domain} holds {info.kind}; pretrain on a frames"
                          " domain")
    shift = SHIFTS[config.objective]
    if info.frame_shape[0] <= shift:
        raise ConfigError(f"next_frame needs sequences of 2 or more frames; {info.domain} has"
                          f" {info.frame_shape[0]}. Received: objective={config.objective!r}")
    check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume)
    backend.seed_everything(config.seed)
    mean, variance = channel_stats(info.path, "train")
    model = build_autoencoder(config.model, frame_shape=info.frame_shape, mean=mean, variance=variance)
    run_config = {
        "kind": "pretrain",
        "config": to_dict(config),
        "model": to_dict(config.model),
        # No class names: the run never saw labels, so it has no classes to keep.
        "domain": {"name": info.domain, "path": str(info.path), "frame_shape": list(info.frame_shape),
                   "split_sizes": info.split_sizes, "kind": info.kind},
        "normalization": {"mean": mean.tolist(), "variance": variance.tolist()},
        "n_params": int(model.count_params()),
        "versions": backend.versions(),
    }
    sequences = {split: FrameSequence(info.path, split, mean=mean, variance=variance, batch_size=config.batch_size,
                                      shuffle=split == "train", seed=config.seed)
                 for split in ("train", "val", "test")}
    with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume) as run:
        run.watch(info.path)
        run.save_config(run_config)
        model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=FramePredictionLoss(shift))
        history, train_seconds = fit(model, sequences["train"], sequences["val"], epochs=config.epochs,
                                     patience=config.patience, verbose=verbose, checkpoint=Checkpoint.open(run.path))
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
