"""Training a classifier on a source domain and writing its run: plan (no backend), then run."""

import logging

import keras

from convlstm_tl import backend, distribute
from convlstm_tl.compute import dtype_policy, jit_compile
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.runs.directory import RunDirectory
from convlstm_tl.runs.record import make_run_record
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.training.fit import fit
from convlstm_tl.training.inputs import domain_record, input_arguments
from convlstm_tl.training.plans import plan_source
from convlstm_tl.training.report import TrainResult, evaluate_and_save

log = logging.getLogger(__name__)


def train_source(config, *, info=None, verbose="auto"):
    """Train a ConvLSTM classifier on ``config.source`` and write its run.

    Args:
        config: a :class:`convlstm_tl.config.TrainConfig`.
        info: the source's :class:`DomainInfo` if the caller opened the file already.
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`TrainResult`.

    Raises:
        UserError: see :func:`plan_source`.
    """
    return run_source(plan_source(config, info=info), verbose=verbose)


def run_source(plan, *, verbose="auto"):
    """Carry out a :class:`SourcePlan`: build, train and score the classifier, and write its run."""
    config, info = plan.config, plan.info
    path = info.path
    chief = distribute.is_chief(config.distribute)
    # Before any other TensorFlow work: the multi-worker strategy sets up the runtime.
    strategy = distribute.make_strategy(config.distribute)
    with backend.seeded(config.seed):
        inputs = input_arguments(info)
        with distribute.scope(strategy), dtype_policy(config.mixed_precision):
            model = build_classifier(config.model, frame_shape=info.frame_shape, n_classes=info.n_classes, **inputs)
        run_config = make_run_record("source", config=config, model=config.model, domain=domain_record(info),
                                     model_inputs=inputs, n_params=model.count_params(),
                                     replicas=distribute.replicas(strategy))
        with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume,
                          publish=chief) as run:
            run.watch(path)
            run.save_config(run_config)
            with distribute.scope(strategy):
                model.compile(
                    optimizer=keras.optimizers.Adam(config.lr),
                    loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"],
                    jit_compile=jit_compile(config.jit),
                )
            train = DomainSequence(path, "train", batch_size=config.batch_size, shuffle=True, seed=config.seed,
                                   augment=config.augment)
            val = DomainSequence(path, "val", batch_size=config.batch_size)
            history, train_seconds = fit(model, train, val, epochs=config.epochs, patience=config.patience,
                                         verbose=verbose, checkpoint=Checkpoint.open(run.path))
            metrics = evaluate_and_save(model, path, info, run.path, run_name=config.run_name, history=history,
                                        train_seconds=train_seconds, batch_size=config.batch_size)
        return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


