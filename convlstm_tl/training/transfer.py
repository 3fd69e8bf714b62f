"""Transfer a source run's body to a target domain, by any strategy, and write the transfer run.

The one code path of every strategy (:mod:`convlstm_tl.strategies.registry`):
load the source run, build the target model by the recipe
(:mod:`convlstm_tl.strategies.recipe`), train the strategy's phases (on cached
body outputs when the body stays frozen), and write the run.
"""

import logging
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from convlstm_tl import backend, distribute
from convlstm_tl.compute import dtype_policy, jit_compile
from convlstm_tl.data.sequence import ArraySequence, DomainSequence
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.jsonio import save_json
from convlstm_tl.models.backbone import Backbone
from convlstm_tl.models.classifier import load_model
from convlstm_tl.models.paired import paired_model
from convlstm_tl.runs.directory import RunDirectory
from convlstm_tl.runs.record import make_run_record
from convlstm_tl.strategies.recipe import (
    build_transfer_model, compile_for_phase, init_head_from_source, set_phase, transfer_inputs,
)
from convlstm_tl.training.adabn import adapt_batch_norm
from convlstm_tl.training.adaptation import (
    SIGN_SEARCH_SAMPLES, adapter_record, choose_adapter_signs, paired_options, paired_sequences, source_rescaling,
    target_frames, uses_paired_model,
)
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.training.ensemble import Member, combined_model, ensemble_record, train_members
from convlstm_tl.training.fit import fit, fit_again, phase_result, write_history
from convlstm_tl.training.inputs import class_weights, domain_record
from convlstm_tl.training.plans import plan_transfer
from convlstm_tl.training.report import TrainResult, evaluate_and_save, training_record

log = logging.getLogger(__name__)


def transfer(config, *, target_info=None, verbose="auto"):
    """Transfer a source run to ``config.target`` and write the transfer run.

    Args:
        config: a :class:`convlstm_tl.config.TransferConfig`.
        target_info: the target's :class:`DomainInfo` if already validated.
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`convlstm_tl.training.source.TrainResult`; its metrics also hold
        ``source_test`` (accuracy kept on the source's test split, when the
        classes match), ``seconds_per_epoch`` and ``feature_cache``.

    Raises:
        UserError: see :func:`plan_transfer`, and a source model that cannot be loaded.
    """
    return run_transfer(plan_transfer(config, target_info=target_info), verbose=verbose)


def run_transfer(plan, *, verbose="auto"):
    """Carry out a :class:`TransferPlan`: build the target model, train the strategy's phases, write the run.

    With ``config.refit``, a second model, built as the first (same restored
    body, same initial head), then trains each phase on the labelled subset +
    the target's validation split for the epochs validation chose; the
    refit model is the one saved. With ``config.ensemble = K``, K such models
    (seeds ``seed .. seed + K - 1``; the labelled subset is the same) are
    trained and their averaged prediction is saved as one model.
    """
    config, strategy, target_info, name = plan.config, plan.strategy, plan.target_info, plan.name
    path, train_indices = target_info.path, plan.train_indices
    chief = distribute.is_chief(config.distribute)
    # Before any other TensorFlow work (loading the model): the multi-worker strategy sets up the runtime.
    distribution = distribute.make_strategy(config.distribute)
    # The plan read the source's record; only its model is left to load.
    source = replace(plan.source, model=load_model(plan.source.path / "model.keras"))
    options = paired_options(plan)
    with backend.seeded(config.seed):
        # Without target labels the statistics are still the target's: of all its training frames.
        inputs = transfer_inputs(source, target_info, normalization=config.normalization,
                                 indices=None if config.unlabelled else train_indices)
        model, adabn, sign_search = _build(plan, source, inputs, distribution)
        use_cache = (config.cache_features and strategy.body_frozen_throughout and not config.augment.active
                     and config.adapter == "none" and not uses_paired_model(plan))

        kept = replace(source.model_config, filters=source.model_config.filters[:strategy.keep_blocks])
        run_config = make_run_record(
            "transfer", config=config, model=kept, domain=domain_record(target_info), model_inputs=inputs,
            n_params=model.count_params(), normalization_from=config.normalization,
            source_run=str(source.path.resolve()),
            strategy={**strategy.to_dict(), "body_lr": config.effective_body_lr, "feature_cache": use_cache,
                      "adapter": config.adapter, "adapt": config.adapt,
                      "source_data": None if plan.source_info is None else str(plan.source_info.path)},
            target_samples={"n": int(len(train_indices)), "of": int(plan.n_train_total),
                            "indices": train_indices.tolist()})
        run_directory = RunDirectory(config.runs_dir, name, overwrite=config.overwrite, resume=config.resume,
                                     publish=chief)
        with run_directory as run, distribute.scope(distribution):
            run.watch(target_info.path)
            run.save_config(run_config)
            checkpoint = Checkpoint.open(run.path)
            start = time.perf_counter()
            if config.unlabelled:  # no target label is read: the labelled batches are the source's
                train = val = pooled = None
            else:
                train, val, pooled = _sequences(model, strategy, config, target_info, train_indices, use_cache)
            if options is not None:
                input_names = paired_model(model, **options).input
                train, val, pooled = paired_sequences(plan, train, val, pooled, rescaling=source_rescaling(
                    source, inputs), input_names=list(input_names))
            cache_seconds = time.perf_counter() - start if use_cache else 0.0

            def build(seed):
                return _build(plan, source, inputs, distribution)[0]

            def train_one(seed, first_phase):
                with backend.seeded(seed):
                    member = build(seed)
                    for sequence in (train, pooled):  # the member's batch order
                        if sequence is not None:
                            sequence.seed = seed
                    fitted = _train_phases(member, plan, source, train, val, use_cache, verbose,
                                           checkpoint=checkpoint, offset=first_phase)
                    refit = None
                    if config.refit:
                        with backend.seeded(seed):  # the same initial head, seeded afresh
                            member = build(seed)
                        refit = _train_phases(member, plan, source, pooled, None, use_cache, verbose,
                                              checkpoint=checkpoint, selected=fitted, offset=first_phase)
                return Member(model=member, seed=seed, fitted=fitted, refit=refit)

            members = train_members(config, run.path, checkpoint, n_validated=len(_trained_phases(plan)),
                                    build=build, train_one=train_one)
            first = members[0]
            if first.refit:
                write_history(run.path / "refit_history.csv", _joined(first.refit))
            history = _joined(first.fitted)
            seconds = cache_seconds + sum(result.seconds for member in members
                                          for result in [*member.fitted, *(member.refit or [])])
            model = combined_model(members)
            # The saved model is a plain classifier: every layer trainable (as a
            # source run's), with a stock optimizer so that plain
            # keras.saving.load_model reads it; building the optimizer now makes
            # the saved one match the one a load builds, so loading does not warn.
            for layer in model.layers:
                layer.trainable = True
            model.compile(optimizer=keras.optimizers.Adam(config.lr), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"], jit_compile=jit_compile(config.jit))
            model.optimizer.build(model.trainable_variables)
            refit_samples = len(pooled.labels) if pooled is not None else None
            extras = {**training_record(first.fitted, batch_size=config.batch_size, monitor=config.monitor,
                                        refit=first.refit, refit_samples=refit_samples),
                      **_transfer_extras(model, source, target_info, history, seconds, use_cache)}
            if adabn is not None:
                extras["adabn"] = adabn
            adapter = adapter_record(first.model)
            if adapter is not None:
                save_json(run.path / "adapter.json", {**adapter, "start": sign_search or "identity"})
            ensemble = ensemble_record(members, path, target_info, batch_size=config.batch_size)
            if ensemble is not None:
                extras["ensemble"] = ensemble
            metrics = evaluate_and_save(model, path, target_info, run.path, run_name=name, history=history,
                                        train_seconds=seconds, batch_size=config.batch_size, extra=extras)
        return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


def _build(plan, source, inputs, distribution):
    """The target model by the recipe, what AdaBN changed, and the adapter's sign search (each None without it).

    The body is restored, with an adapter if asked; the head is new, or the
    source's (``head_init source``, and always without target labels). With
    ``adapter_init signs`` the adapter starts from the channel signs chosen
    on the target's unlabelled training frames; with ``adapt adabn`` the
    restored BatchNorm statistics are then re-estimated on those frames.
    """
    config, strategy, target_info = plan.config, plan.strategy, plan.target_info
    with distribute.scope(distribution), dtype_policy(config.mixed_precision):
        model = build_transfer_model(source, strategy, frame_shape=target_info.frame_shape,
                                     n_classes=target_info.n_classes, adapter=config.adapter == "channel", **inputs)
    if config.head_init == "source" or config.unlabelled:
        init_head_from_source(model, source, strategy, target_info.class_names)
    search = adabn = None
    if config.adapter_init == "signs":
        n_train = target_info.split_sizes["train"]
        chosen = np.sort(np.random.default_rng(config.seed).choice(
            n_train, min(n_train, SIGN_SEARCH_SAMPLES), replace=False))
        frames = DomainSequence(target_info.path, "train", batch_size=256, indices=chosen, with_labels=False)
        source_head = [source.model.get_layer(layer.name).get_weights() for layer in Backbone(model).head_layers]
        search = choose_adapter_signs(model, source_head, np.concatenate([frames[i] for i in range(len(frames))]))
    if config.adapt == "adabn":
        adabn = adapt_batch_norm(model, target_frames(plan, shuffle=False))
    return model, adabn, search


def _trained_phases(plan):
    """The strategy's phases that train: none without target labels and without a loss to train on (adabn)."""
    if plan.config.unlabelled and not uses_paired_model(plan):
        return ()
    return plan.strategy.phases


def _train_phases(model, plan, source, train, val, use_cache, verbose, *, checkpoint, selected=None, offset=0):
    """Run the strategy's phases; return the :class:`FitResult` of each.

    With ``selected`` (the validated phases' results), a refit: no
    validation, each phase trains for the epochs its validated phase chose,
    and the checkpoint counts these phases after the validated ones.
    ``offset`` is the checkpoint phase of the first phase (an ensemble's
    later members train after the earlier ones' phases). A resumed run skips the phases its checkpoint has finished (the
    checkpoint holds their records) and continues the one it is in.
    """
    config, strategy = plan.config, plan.strategy
    options = paired_options(plan)
    phases = _trained_phases(plan)
    results, epochs_left = [], config.epochs
    first = offset + (len(phases) if selected is not None else 0)
    for index, phase in enumerate(phases):
        finished = checkpoint.finished_phase(first + index)
        if finished is not None:
            result = phase_result(finished, patience=config.patience if selected is None else None)
        else:
            # Without target labels the source's head is kept as it is.
            set_phase(model, strategy, phase, train_head=not config.unlabelled)
            if use_cache:
                trained = Backbone(model).head(train.x.shape[1:], pooled=True)
            elif options is not None:
                trained = paired_model(model, **options, source_model=source.model)
            else:
                trained = model
            compile_for_phase(trained, strategy, phase, lr=config.lr, body_lr=config.effective_body_lr,
                              adapter_lr=config.effective_adapter_lr,
                              jit=config.jit, n_classes=model.output_shape[-1],
                              # a head on cached features: one call an epoch, not one a batch
                              steps_per_execution=len(train) if use_cache else 1)
            if selected is not None:
                result = fit_again(trained, train, selected[index], checkpoint=checkpoint, phase=first + index,
                                   verbose=verbose)
            else:
                # The untrained model is a candidate when it is already a whole model whose validation
                # measure means what the trained ones' does: started from the source's head, a few target
                # labels must not make it worse than the source model already is; without target labels,
                # when validation measures the whole objective (see paired_options).
                whole_objective = options is not None and options["align_in_validation"]
                result = fit(trained, train, val, epochs=phase.epochs if phase.epochs is not None else epochs_left,
                             patience=config.patience, monitor=config.monitor, lr_schedule=config.lr_schedule,
                             verbose=verbose, checkpoint=checkpoint, phase=first + index,
                             keep_start=(config.head_init == "source" or whole_objective) and index == 0)
        results.append(result)
        epochs_left -= result.epochs
    return results


def _joined(results):
    """The phases' histories end to end."""
    history = {}
    for result in results:
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    return history


def _sequences(model, strategy, config, target_info, train_indices, use_cache):
    """``(train, val, pooled)``: the labelled subset, the validation split, and both pooled for a refit
    (None without ``config.refit``).

    With the cache, the frozen body runs once over each; the sequences hold
    its outputs pooled over time and space (all the head's trained layers
    see). Training batches carry the class weights of their labels.
    """
    path, n_classes = target_info.path, target_info.n_classes
    if use_cache:
        set_phase(model, strategy, strategy.phases[0])
        # Pooled through the head's own pooling layer: one vector per sample is all the head's trained
        # layers see, so the cache holds (N, filters), not the body's whole output sequences.
        body = Backbone(model).body_pooled(strategy.keep_blocks)
        features = {}
        for split, indices in (("train", train_indices), ("val", None)):
            frames = DomainSequence(path, split, batch_size=max(config.batch_size, 128), indices=indices,
                                    with_labels=False)
            features[split] = (np.asarray(body.predict(frames, verbose=0)), frames.labels)
        x, y = features["train"]
        train = ArraySequence(x, y, batch_size=config.batch_size, shuffle=True, seed=config.seed,
                              class_weight=class_weights(config.class_weight, y, n_classes))
        val = ArraySequence(*features["val"], batch_size=config.batch_size)
        if not config.refit:
            return train, val, None
        x, y = (np.concatenate(arrays) for arrays in zip(features["train"], features["val"]))
        pooled = ArraySequence(x, y, batch_size=config.batch_size, shuffle=True, seed=config.seed,
                               class_weight=class_weights(config.class_weight, y, n_classes))
        return train, val, pooled
    train = DomainSequence(path, "train", batch_size=config.batch_size, indices=train_indices, shuffle=True,
                           seed=config.seed, augment=config.augment)
    train.class_weight = class_weights(config.class_weight, train.labels, n_classes)
    val = DomainSequence(path, "val", batch_size=config.batch_size)
    if not config.refit:
        return train, val, None
    pooled = DomainSequence(path, ("train", "val"), batch_size=config.batch_size, indices=(train_indices, None),
                            shuffle=True, seed=config.seed, augment=config.augment)
    pooled.class_weight = class_weights(config.class_weight, pooled.labels, n_classes)
    return train, val, pooled


def _transfer_extras(model, source, target_info, history, seconds, use_cache):
    """Metrics a transfer run adds: speed, cache use, and accuracy kept on the source."""
    extras = {"feature_cache": use_cache,
              "seconds_per_epoch": round(seconds / max(1, len(next(iter(history.values()), []))), 4)}
    source_domain = source.domain
    source_path = Path(source_domain.get("path", ""))
    if source_domain.get("class_names") == list(target_info.class_names) and source_path.is_file():
        y_true, y_pred, _ = predict_split(model, source_path, "test")
        kept = classification_metrics(y_true, y_pred, target_info.class_names, domain=source_domain["name"])
        extras["source_test"] = {"domain": kept["domain"], "accuracy": kept["accuracy"],
                                 "macro_f1": kept["macro_f1"]}
    return extras
