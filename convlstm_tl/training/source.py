"""Training a classifier on a source domain and writing its run: plan (no backend), then run."""

import logging

import keras

from convlstm_tl import backend, distribute
from convlstm_tl.compute import dtype_policy, jit_compile
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.models.metrics import SparseMacroF1
from convlstm_tl.runs.directory import RunDirectory
from convlstm_tl.runs.record import make_run_record
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.training.ensemble import Member, combined_model, ensemble_record, train_members
from convlstm_tl.training.fit import fit, fit_again, phase_result, write_history
from convlstm_tl.training.inputs import class_weights, domain_record, input_arguments
from convlstm_tl.training.plans import plan_source
from convlstm_tl.training.report import TrainResult, evaluate_and_save, training_record

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
    """Carry out a :class:`SourcePlan`: build, train and score the classifier, and write its run.

    With ``config.refit``, a second model from the same initial weights then
    trains on train + val for the epochs validation chose, with the learning
    rates the validated fit used; the refit model is the one saved. With
    ``config.ensemble = K``, K such models (seeds ``seed .. seed + K - 1``)
    are trained and their averaged prediction is saved as one model.
    """
    config, info = plan.config, plan.info
    path = info.path
    chief = distribute.is_chief(config.distribute)
    # Before any other TensorFlow work: the multi-worker strategy sets up the runtime.
    strategy = distribute.make_strategy(config.distribute)
    with backend.seeded(config.seed):
        inputs = input_arguments(info)
        n_params = _build(config, info, inputs, strategy).count_params() * config.ensemble
    run_config = make_run_record("source", config=config, model=config.model, domain=domain_record(info),
                                 model_inputs=inputs, n_params=n_params, replicas=distribute.replicas(strategy))
    with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume,
                      publish=chief) as run:
        run.watch(path)
        run.save_config(run_config)
        checkpoint = Checkpoint.open(run.path)
        val = DomainSequence(path, "val", batch_size=config.batch_size)

        def build(seed):
            return _build(config, info, inputs, strategy)

        def train_one(seed, first_phase):
            with backend.seeded(seed):
                model = _build(config, info, inputs, strategy)
                train = _training_sequence(path, "train", None, config, seed, info.n_classes)
                fitted = _validated_fit(model, config, train, val, checkpoint, verbose, phase=first_phase)
                refit = None
                if config.refit:
                    # The same initial weights (seeded afresh), trained on every labelled sample.
                    with backend.seeded(seed):
                        model = _build(config, info, inputs, strategy)
                    pooled = _training_sequence(path, ("train", "val"), (None, None), config, seed, info.n_classes)
                    refit = [fit_again(model, pooled, fitted, checkpoint=checkpoint, phase=first_phase + 1,
                                       verbose=verbose)]
            return Member(model=model, seed=seed, fitted=[fitted], refit=refit)

        members = train_members(config, run.path, checkpoint, n_validated=1, build=build, train_one=train_one)
        first = members[0]
        if first.refit:
            write_history(run.path / "refit_history.csv", first.refit[0].history)
        model = combined_model(members)
        extra = training_record(first.fitted, batch_size=config.batch_size, monitor=config.monitor,
                                refit=first.refit, refit_samples=sum(info.split_sizes[s] for s in ("train", "val")))
        ensemble = ensemble_record(members, path, info, batch_size=config.batch_size)
        if ensemble is not None:
            extra["ensemble"] = ensemble
        seconds = sum(result.seconds for member in members for result in [*member.fitted, *(member.refit or [])])
        metrics = evaluate_and_save(model, path, info, run.path, run_name=config.run_name,
                                    history=first.fitted[0].history, train_seconds=seconds,
                                    batch_size=config.batch_size, extra=extra)
    return TrainResult(run_dir=run.path, metrics=metrics, history=first.fitted[0].history, model=model)


def _training_sequence(path, splits, indices, config, seed, n_classes):
    """Shuffled training batches of ``splits`` (seeded by ``seed``), weighted by class as the config says."""
    sequence = DomainSequence(path, splits, batch_size=config.batch_size, indices=indices, shuffle=True, seed=seed,
                              augment=config.augment)
    sequence.class_weight = class_weights(config.class_weight, sequence.labels, n_classes)
    return sequence


def _build(config, info, inputs, strategy):
    """The classifier, compiled for training."""
    with distribute.scope(strategy), dtype_policy(config.mixed_precision):
        model = build_classifier(config.model, frame_shape=info.frame_shape, n_classes=info.n_classes, **inputs)
    with distribute.scope(strategy):
        model.compile(
            optimizer=keras.optimizers.Adam(config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy", SparseMacroF1(info.n_classes)],
            jit_compile=jit_compile(config.jit),
        )
    return model


def _validated_fit(model, config, train, val, checkpoint, verbose, *, phase):
    """The fit on train with early stopping on val, or its record if a resumed run is past that phase."""
    finished = checkpoint.finished_phase(phase)
    if finished is not None:
        return phase_result(finished, patience=config.patience)
    return fit(model, train, val, epochs=config.epochs, patience=config.patience, monitor=config.monitor,
               lr_schedule=config.lr_schedule, verbose=verbose, checkpoint=checkpoint, phase=phase)
