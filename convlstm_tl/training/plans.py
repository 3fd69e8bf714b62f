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
from convlstm_tl.config import OBJECTIVE_SHIFTS, PretrainConfig, TrainConfig, TransferConfig, resolve_batch_size
from convlstm_tl.data.format import DomainInfo, find_domain, open_domain, resolve_data_dir
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.errors import ConfigError
from convlstm_tl.evaluation.alignment import check_same_input
from convlstm_tl.runs.directory import check_run_target
from convlstm_tl.runs.resolve import Run, load_run
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
        train_indices: the target's labelled training samples the transfer trains on.
        n_train_total: the size of the target's training split.
    """

    config: TransferConfig
    source: Run
    strategy: Strategy
    target_info: DomainInfo
    name: str
    train_indices: np.ndarray
    n_train_total: int


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
    name = config.name or default_run_name(source.path, config.target, config.strategy)
    # Only the chief writes the run; other workers of a multi-worker run cannot see it.
    if distribute.is_chief(config.distribute):
        check_run_target(config.runs_dir, name, overwrite=config.overwrite, resume=config.resume)
    check_augment_fits(config.augment, target_info)
    check_same_input(source.name, source.domain, target_info, strategy)
    train_indices, n_total = labelled_subset(target_info.path, fraction=config.target_fraction,
                                             per_class=config.target_per_class, seed=config.seed)
    config = replace(config, batch_size=resolve_batch_size(config.batch_size, len(train_indices)))
    return TransferPlan(config=config, source=source, strategy=strategy, target_info=target_info, name=name,
                        train_indices=train_indices, n_train_total=n_total)


def _open_recorded(config, domain, info):
    """Open ``domain``'s file (unless ``info`` is given) and record in the config the folder it is in.

    A run's ``config.json`` then names the data folder used, also when it
    came from ``$CONVLSTM_TL_DATA`` or the default.
    """
    if info is None:
        info = open_domain(find_domain(domain, resolve_data_dir(config.data_dir or None)))
    return info, replace(config, data_dir=str(info.path.parent))


def default_run_name(source_path, target, strategy_spec):
    """``<source run>-<target>-<strategy without colon>``, e.g. ``St-ms-cut1``."""
    return f"{Path(source_path).name}-{target}-{slug(strategy_spec)}"


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
