"""Every check a run needs before anything heavy: configs validated once, files, names, folders; no backend.

``plan_source``, ``plan_transfer`` and ``plan_pretrain`` validate the
config (the one place it happens), resolve the data folder the run will
record, open the domain files, check the strategy against the source
body's size (from the source's record, without loading its model) and the
run's folder. The drivers (:mod:`convlstm_tl.training.source`,
:mod:`~convlstm_tl.training.transfer`, :mod:`~convlstm_tl.training.pretrain`)
carry out a plan; a command line makes one before it starts the backend, so
a mistake costs no start-up.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from convlstm_tl import distribute
from convlstm_tl.config import (
    ALIGNMENT_ADAPTS, OBJECTIVE_SHIFTS, PretrainConfig, TrainConfig, TransferConfig, resolve_batch_size,
)
from convlstm_tl.data.format import DomainInfo, find_domain, open_domain, resolve_data_dir
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.errors import ConfigError
from convlstm_tl.evaluation.alignment import check_same_input
from convlstm_tl.runs.directory import check_run_target
from convlstm_tl.runs.resolve import Run, load_run, same_classes
from convlstm_tl.strategies.registry import Strategy, parse_strategy, slug
from convlstm_tl.training.inputs import check_augment_fits


@dataclass
class SourcePlan:
    """A source run checked in full before anything heavy runs (:func:`plan_source`).

    Attributes:
        config: the validated config, ``data_dir`` resolved to the folder
            used and ``batch_size`` to the one trained with.
        info: the source domain's :class:`~convlstm_tl.data.format.DomainInfo`.
    """

    config: TrainConfig
    info: DomainInfo


def plan_source(config, *, info=None):
    """Validate ``config`` (once) and check the domain file and the run's folder, without the backend.

    Args:
        config: a :class:`convlstm_tl.config.TrainConfig`.
        info: the source's :class:`DomainInfo` if the caller opened the file
            already (skips a second scan of a large file).

    Raises:
        UserError: for invalid settings, a missing or invalid domain file,
            augmentation that does not fit its frames, or a run folder that
            exists or cannot be written.
    """
    config.validate()
    info, config = _open_recorded(config, config.source, info)
    # Only the chief writes the run; other workers of a multi-worker run cannot see it.
    if distribute.is_chief(config.distribute):
        check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume)
    check_augment_fits(config.augment, info)
    config = replace(config, batch_size=resolve_batch_size(config.batch_size, info.split_sizes["train"]))
    return SourcePlan(config=config, info=info)


@dataclass
class TransferPlan:
    """A transfer checked in full before anything heavy runs (:func:`plan_transfer`).

    Attributes:
        config: the validated config, ``data_dir`` resolved to the folder
            used and ``batch_size`` to the one trained with.
        source: the source :class:`~convlstm_tl.runs.resolve.Run` (its record; no model loaded yet).
        strategy: the :class:`~convlstm_tl.strategies.registry.Strategy` for the source's body.
        target_info: the target's :class:`~convlstm_tl.data.format.DomainInfo`.
        name: the run's name.
        train_indices: the target's labelled training samples the transfer trains on
            (none with ``target_fraction`` 0).
        n_train_total: the size of the target's training split.
        source_info: the source domain's :class:`~convlstm_tl.data.format.DomainInfo`
            when the transfer reads the source's data (joint training,
            alignment, no target labels), else None.
    """

    config: TransferConfig
    source: Run
    strategy: Strategy
    target_info: DomainInfo
    name: str
    train_indices: np.ndarray
    n_train_total: int
    source_info: DomainInfo | None = None


def plan_transfer(config, *, target_info=None):
    """Validate ``config`` and check everything a transfer needs, without the backend.

    The config is validated here, once; the strategy is checked against the
    source body's size from the source's record; the target must be a valid
    domain file the body can read, and the run's folder writable.

    Raises:
        UserError: for any of these, one line.
    """
    config.validate()
    source = load_run(config.source_run, config.runs_dir, with_model=False)
    source.check_single_model("a transfer")
    strategy = parse_strategy(config.strategy, source.n_blocks, head_epochs=config.head_epochs)
    target_info, config = _open_recorded(config, config.target, target_info)
    name = config.name or default_run_name(source.path, config.target, config.strategy, adapter=config.adapter,
                                           adapt=config.adapt)
    # Only the chief writes the run; other workers of a multi-worker run cannot see it.
    if distribute.is_chief(config.distribute):
        check_run_target(config.runs_dir, name, overwrite=config.overwrite, resume=config.resume)
    check_augment_fits(config.augment, target_info)
    check_same_input(source.name, source.domain, target_info, strategy)
    _check_adaptation_fits(config, source, target_info)
    source_info = _open_source_data(config, source, target_info) if _reads_source_data(config, strategy) else None
    if config.unlabelled:
        # No target label is read: not even to choose a subset.
        train_indices, n_total = np.arange(0), target_info.split_sizes["train"]
        n_labelled = source_info.split_sizes["train"]
    else:
        train_indices, n_total = labelled_subset(target_info.path, fraction=config.target_fraction,
                                                 per_class=config.target_per_class, seed=config.seed)
        n_labelled = len(train_indices)
    config = replace(config, batch_size=resolve_batch_size(config.batch_size, n_labelled))
    return TransferPlan(config=config, source=source, strategy=strategy, target_info=target_info, name=name,
                        train_indices=train_indices, n_train_total=n_total, source_info=source_info)


def _reads_source_data(config, strategy):
    aligns = config.adapt in ALIGNMENT_ADAPTS and config.adapt != "im"  # im reads the target's frames only
    return strategy.with_source_data or aligns or config.unlabelled


def _check_adaptation_fits(config, source, target_info):
    """Refuse an adapter for token ids, and no target label for a target of other classes."""
    if config.adapter != "none" and target_info.kind != "frames":
        raise ConfigError(f"adapter {config.adapter} mixes the channels of frames, but {target_info.domain} holds"
                          f" {target_info.kind}; leave the adapter out", field="adapter")
    classes_kept = same_classes(source.class_names, target_info.class_names)
    if config.adapter_init == "signs" and not classes_kept:
        raise ConfigError(f"adapter_init signs scores sign flips with the source's head, so the target must have the"
                          f" source's classes in the same order; source run {source.name} has {source.class_names},"
                          f" {target_info.domain} {list(target_info.class_names)}", field="adapter_init")
    if config.unlabelled and not classes_kept:
        raise ConfigError(f"target_fraction 0 keeps the source's head, so the target must have the source's classes"
                          f" in the same order; source run {source.name} has {source.class_names}, {target_info.domain}"
                          f" {list(target_info.class_names)}", field="target_fraction")


def _open_source_data(config, source, target_info):
    """The source run's domain file, for a transfer that trains on it: the recorded file, else the data folder's.

    Raises:
        ConfigError: the file is gone, or its frames are not the target's shape.
    """
    why = ("joint trains on the source's training data" if config.strategy == "joint"
           else f"adapt {config.adapt} reads the source's training data" if config.adapt in ALIGNMENT_ADAPTS
           else "target_fraction 0 trains on the source's labels")
    found = source.find_domain_file(config.data_dir)
    if found is None:
        raise ConfigError(f"{why}, but source run {source.name}'s domain file is gone"
                          f" ({', nor '.join(map(str, source.domain_file_candidates(config.data_dir)))}); put it back"
                          f" or prepare {source.domain_name} again", field="strategy")
    info = open_domain(found)
    if tuple(info.frame_shape) != tuple(target_info.frame_shape) or info.kind != target_info.kind:
        raise ConfigError(f"{why}, so its samples must have the target's shape; {info.domain} has {info.kind}"
                          f" {tuple(info.frame_shape)}, {target_info.domain} {tuple(target_info.frame_shape)}",
                          field="strategy")
    return info


def _open_recorded(config, domain, info):
    """Open ``domain``'s file (unless ``info`` is given) and record in the config the folder it is in.

    A run's ``config.json`` then names the data folder used, also when it
    came from ``$CONVLSTM_TL_DATA`` or the default.
    """
    if info is None:
        info = open_domain(find_domain(domain, resolve_data_dir(config.data_dir or None)))
    return info, replace(config, data_dir=str(info.path.parent))


def default_run_name(source_path, target, strategy_spec, *, adapter="none", adapt="none"):
    """``<source run>-<target>-<strategy without colon>[-adapter][-<adapt>]``, e.g. ``St-ms-cut1``,
    ``St-ms-freeze-adapter``, ``St-ms-finetune-adabn``."""
    extras = [part for part, used in (("adapter", adapter != "none"), (adapt, adapt != "none")) if used]
    return "-".join([Path(source_path).name, target, slug(strategy_spec), *extras])


@dataclass
class PretrainPlan:
    """A pretraining run checked in full before anything heavy runs (:func:`plan_pretrain`)."""

    config: PretrainConfig
    info: DomainInfo


def plan_pretrain(config, *, info=None):
    """Validate ``config`` (once) and check the domain and the run's folder, without the backend.

    Raises:
        UserError: for a missing or invalid domain file, a token domain,
            sequences too short for the objective, bad options, or a run
            directory that exists or cannot be written.
    """
    config.validate()
    info, config = _open_recorded(config, config.domain, info)
    if info.kind != "frames":
        raise ConfigError(f"pretraining predicts frames, but {info.domain} holds {info.kind}; pretrain on a frames"
                          " domain")
    if info.frame_shape[0] <= OBJECTIVE_SHIFTS[config.objective]:
        raise ConfigError(f"next_frame needs sequences of 2 or more frames; {info.domain} has"
                          f" {info.frame_shape[0]}. Received: objective={config.objective!r}", field="objective")
    check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume)
    config = replace(config, batch_size=resolve_batch_size(config.batch_size, info.split_sizes["train"]))
    return PretrainPlan(config=config, info=info)
