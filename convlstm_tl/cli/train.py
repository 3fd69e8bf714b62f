"""``python -m convlstm_tl.train``: train on a source domain, transfer to a target, or pretrain.

    python -m convlstm_tl.train --source St
    python -m convlstm_tl.train --transfer ms --from St --strategy freeze
    python -m convlstm_tl.train --pretrain ms          # body as a frame autoencoder, no labels

Settings come from the defaults of :class:`convlstm_tl.config.TrainConfig`
(or :class:`~convlstm_tl.config.TransferConfig`), then ``--config FILE``
(JSON, the same keys as the ``"config"`` entry of a run's ``config.json``),
then the flags given on the command line.
"""

import argparse
import dataclasses
import importlib
import sys

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.config import (
    ADAPTER_INITS, ADAPTERS, ADAPTS, CLASS_WEIGHTS, DISTRIBUTE, HEAD_INITS, JIT, LR_SCHEDULES, MAX_AUTO_BATCH,
    MIN_AUTO_BATCH, MIN_STEPS_PER_EPOCH, MIXED_PRECISION, MONITORS, NORMALIZATIONS, OBJECTIVES, ModelConfig,
    PretrainConfig, TrainConfig, TransferConfig,
)
from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import from_dict, load_json
from convlstm_tl.strategies.registry import STRATEGY_NAMES

PROG = "python -m convlstm_tl.train"

# Flags copied onto the config when given, by mode.
_SHARED_KEYS = ("name", "data_dir", "runs_dir", "epochs", "batch_size", "lr", "patience", "monitor", "class_weight",
                "lr_schedule", "refit", "ensemble", "seed", "overwrite", "resume", "distribute", "mixed_precision",
                "jit")
_TRANSFER_KEYS = ("strategy", "body_lr", "head_epochs", "normalization", "target_fraction", "target_per_class",
                  "cache_features", "head_init", "adapter", "adapter_lr", "adapter_init", "adapt",
                  "adapt_weight", "target_weight")
_AUGMENT_KEYS = {"augment_scale": "scale", "augment_jitter": "jitter", "augment_time_shift": "time_shift",
                 "augment_spatial_shift": "spatial_shift", "augment_rotate": "rotate"}
# flag dest -> ModelConfig key (source training only: a transfer takes the source's architecture)
_MODEL_KEYS = {"kernel": "kernel_size", "dropout": "block_dropout", "recurrent_dropout": "recurrent_dropout",
               "pool": "pool_size", "head_units": "head_units", "head_dropout": "head_dropout", "l2": "l2",
               "blocks": None, "filters": None}


def parse_args(argv=None):
    """Parse the command line; every option defaults to None (= not given), the configs hold the defaults."""
    train, transfer_defaults, model_defaults = TrainConfig(), TransferConfig(), ModelConfig()
    parser = ArgumentParser(prog=PROG, description="Train a ConvLSTM classifier on a source domain, "
                                                   "or transfer a trained one to a target domain.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--source", metavar="DOMAIN", help="train on <data-dir>/DOMAIN.h5")
    mode.add_argument("--transfer", metavar="TARGET", help="transfer to <data-dir>/TARGET.h5 (needs --from)")
    mode.add_argument("--pretrain", metavar="DOMAIN",
                      help="pretrain the body without labels, as an autoencoder of <data-dir>/DOMAIN.h5's frames")
    parser.add_argument("--name", help="run name (default: the domain, or <from>-<target>-<strategy>)")
    parser.add_argument("--config", metavar="FILE", help="JSON file of settings; flags override it")
    parser.add_argument("--data-dir", help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", help="folder of run directories (default: ./runs)")
    parser.add_argument("--epochs", type=int, help=f"maximum epochs; early stopping usually ends training sooner"
                                                   f" (default {train.epochs})")
    parser.add_argument("--batch-size", type=int,
                        help=f"batch size (default: from the training set's size, {MIN_AUTO_BATCH} to"
                             f" {MAX_AUTO_BATCH}, at least {MIN_STEPS_PER_EPOCH} steps an epoch where it can)")
    parser.add_argument("--lr", type=float,
                        help=f"Adam learning rate; of the new head in a transfer (default {train.lr:g})")
    parser.add_argument("--patience", type=int, help="early-stopping patience on --monitor, best weights restored;"
                                                     f" 0 = off (default {train.patience})")
    parser.add_argument("--monitor", choices=MONITORS,
                        help=f"validation measure for early stopping and the best epoch (default {train.monitor})")
    parser.add_argument("--class-weight", choices=CLASS_WEIGHTS,
                        help="balanced: weight the loss of each class's samples by n / (classes x n_class),"
                             f" for imbalanced classes (default {train.class_weight})")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                        help="plateau: halve the learning rate when --monitor stalls for a third of --patience"
                             f" (default {train.lr_schedule})")
    parser.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                        help="then retrain on train + val for the epochs validation chose, and save that model"
                             " (default off)")
    parser.add_argument("--ensemble", type=int, metavar="K",
                        help="train K models (seeds seed .. seed+K-1) and save their averaged prediction as one"
                             " model; K times the training time (default 1)")
    parser.add_argument("--seed", type=int,
                        help=f"random seed (default {train.seed}); the same seed repeats a CPU run")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the interrupted run of this name from its last finished epoch"
                             " (give the same settings)")
    parser.add_argument("--distribute", choices=DISTRIBUTE,
                        help="tf.distribute strategy: mirrored over local GPUs, multiworker from TF_CONFIG;"
                             f" --batch-size is the global batch (default {train.distribute})")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION,
                        help="compute in float16 or bfloat16 with float32 weights and softmax (default"
                             f" {train.mixed_precision}: both were slower than float32 on CPU; float16 is for GPUs)")
    parser.add_argument("--jit", nargs="?", const="on", choices=JIT,
                        help=f"XLA compilation; --jit alone means on (default {train.jit}: auto is Keras' choice,"
                             " off on a CPU-only TensorFlow)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")

    model = parser.add_argument_group("architecture (with --source)")
    model.add_argument("--blocks", type=int, help=f"number of ConvLSTM blocks (default {model_defaults.n_blocks})")
    model.add_argument("--filters", help="filters per block, e.g. 32 or 32,64 (default"
                                         f" {','.join(map(str, model_defaults.filters))})")
    model.add_argument("--kernel", type=int, help="kernel size k: (1,k) for H == 1 frames, (k,k) otherwise")
    model.add_argument("--dropout", type=float, help="dropout after each block")
    model.add_argument("--recurrent-dropout", type=float, help="dropout on the ConvLSTM recurrent state")
    model.add_argument("--pool", type=int, help="spatial max-pool size after each block (1 = none)")
    model.add_argument("--head-units", type=int, help="units of the head's dense layer")
    model.add_argument("--head-dropout", type=float, help="dropout before the softmax")
    model.add_argument("--l2", type=float, help="L2 penalty on kernels")

    augment = parser.add_argument_group("augmentation of training batches (off by default)")
    augment.add_argument("--augment-scale", type=float, help="scale each sample's channels by U(1-s, 1+s)")
    augment.add_argument("--augment-jitter", type=float, help="Gaussian noise, sigma = this x per-channel std")
    augment.add_argument("--augment-time-shift", type=float,
                         help="shift in time by up to this fraction, edges repeated")
    augment.add_argument("--augment-spatial-shift", type=int, help="H > 1: shift frames by up to this many pixels")
    augment.add_argument("--augment-rotate", type=float,
                         help="rotate 3-D sensor vectors (e.g. accelerometer, gyroscope) by up to this many degrees")
    augment.add_argument("--vector-channels", help="channels forming 3-D vectors for --augment-rotate,"
                                                   " e.g. 0,1,2,3,4,5 (default: all channels, 3 at a time)")

    pretraining = parser.add_argument_group("unsupervised pretraining (with --pretrain)")
    pretraining.add_argument("--objective", choices=OBJECTIVES,
                             help="predict the next frame (default) or reconstruct the current one")

    transfer = parser.add_argument_group("transfer (with --transfer)")
    transfer.add_argument("--from", dest="source_run", metavar="RUN", help="source run: a name in --runs-dir or a path")
    transfer.add_argument("--strategy", help=f"{' | '.join(STRATEGY_NAMES)} (default {transfer_defaults.strategy})")
    transfer.add_argument("--body-lr", type=float, help="learning rate of restored blocks that train (default: --lr)")
    transfer.add_argument("--head-epochs", type=int, help="gradual: head-only epochs before unfreezing"
                                                          f" (default {transfer_defaults.head_epochs})")
    transfer.add_argument("--normalization", choices=NORMALIZATIONS,
                          help="normalization statistics: the target's training samples or the source's"
                               f" (default {transfer_defaults.normalization})")
    transfer.add_argument("--target-fraction", type=float,
                          help="keep this fraction of the target's training split; 0 (with --adapt) reads no target"
                               " label: the source's head is kept and only the body or adapter adapts")
    transfer.add_argument("--target-per-class", type=int, help="keep about this many training samples per class")
    transfer.add_argument("--head-init", choices=HEAD_INITS,
                          help="new: a random head (default); source: start from the source run's head, when the"
                               " target has the source's classes in the same order; the start is itself a"
                               " candidate for early stopping (with --normalization source it is the source model)")
    transfer.add_argument("--adapter", choices=ADAPTERS,
                          help="channel: learn a C x C mixing of the target's channels (identity at the start) in"
                               " front of the restored body, for sensors re-placed, rotated or mirrored; written"
                               f" to adapter.json (default {transfer_defaults.adapter})")
    transfer.add_argument("--adapter-lr", type=float,
                          help="learning rate of the adapter (default 10 x --lr)")
    transfer.add_argument("--adapter-init", choices=ADAPTER_INITS,
                          help="signs: start the adapter from the sign flips of the channels under which the"
                               " source's head predicts the target's unlabelled training frames most confidently"
                               " and diversely (a mirrored or flipped sensor; needs the source's classes);"
                               f" default {transfer_defaults.adapter_init}")
    transfer.add_argument("--adapt", choices=ADAPTS,
                          help="use the target's unlabelled training sequences: adabn re-estimates the restored"
                               " BatchNorm statistics; coral, mmd align source and target body features; dann"
                               " trains against a domain classifier; im makes the predictions on the target"
                               f" confident and diverse (default {transfer_defaults.adapt})")
    transfer.add_argument("--adapt-weight", type=float,
                          help="weight of the coral, mmd, dann or im loss"
                               f" (default {transfer_defaults.adapt_weight:g})")
    transfer.add_argument("--target-weight", type=float,
                          help="joint: weight of each step's target batch loss against its source batch's"
                               f" (default {transfer_defaults.target_weight:g})")
    transfer.add_argument("--cache-features", action=argparse.BooleanOptionalAction, default=None,
                          help="train the head on cached body outputs when the body stays frozen (default on)")
    return parser.parse_args(argv)


def build_transfer_config(args):
    """Turn parsed arguments into a :class:`TransferConfig` (validated by the library, once)."""
    given = [flag for flag in _MODEL_KEYS if getattr(args, flag) is not None]
    if given:
        raise ConfigError(f"--{given[0].replace('_', '-')} sets the architecture, which a transfer takes from"
                          " the source run; drop it")
    config = (from_dict(TransferConfig, load_json(args.config), where=args.config) if args.config
              else TransferConfig())
    config.target = args.transfer
    for key in (*_SHARED_KEYS, *_TRANSFER_KEYS, "source_run"):
        if getattr(args, key) is not None:
            setattr(config, key, getattr(args, key))
    _apply_augment_flags(args, config.augment)
    return config


def build_config(args):
    """Turn parsed arguments into a :class:`TrainConfig` (validated by the library, once)."""
    given = [key for key in (*_TRANSFER_KEYS, "source_run") if getattr(args, key) is not None]
    if given:
        flag = "--from" if given[0] == "source_run" else f"--{given[0].replace('_', '-')}"
        raise ConfigError(f"{flag} belongs to a transfer; use it with --transfer TARGET")
    config = from_dict(TrainConfig, load_json(args.config), where=args.config) if args.config else TrainConfig()
    if args.source is not None:
        config.source = args.source
    for key in _SHARED_KEYS:
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    config.model = _model_from_flags(args, config.model)
    _apply_augment_flags(args, config.augment)
    return config


def build_pretrain_config(args):
    """Turn parsed arguments into a :class:`PretrainConfig` (validated by the library, once)."""
    given = [key for key in (*_TRANSFER_KEYS, "source_run", *_AUGMENT_KEYS, "vector_channels")
             if getattr(args, key) is not None]
    if given:
        flag = "--from" if given[0] == "source_run" else f"--{given[0].replace('_', '-')}"
        raise ConfigError(f"{flag} does not apply to pretraining; drop it")
    config = (from_dict(PretrainConfig, load_json(args.config), where=args.config) if args.config
              else PretrainConfig())
    config.domain = args.pretrain
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    for key in (*_SHARED_KEYS, "objective"):
        if getattr(args, key) is not None:
            if key not in known:
                raise ConfigError(f"--{key.replace('_', '-')} does not apply to pretraining; drop it")
            setattr(config, key, getattr(args, key))
    config.model = _model_from_flags(args, config.model)
    return config


def _model_from_flags(args, model):
    """``model`` (a ModelConfig) with the architecture flags given on the command line."""
    for flag, key in _MODEL_KEYS.items():
        value = getattr(args, flag)
        if key is not None and value is not None:
            setattr(model, key, value)
    filters = model.filters
    if args.filters is not None:
        filters = _int_list(args.filters, "--filters")
    if args.blocks is not None:
        if args.blocks < 1:
            raise ConfigError(f"--blocks must be at least 1. Received: --blocks {args.blocks}")
        if len(filters) == 1 or args.filters is None:
            filters = (filters[0],) * args.blocks
        elif len(filters) != args.blocks:
            raise ConfigError(f"--blocks {args.blocks} disagrees with --filters {args.filters}; give one of them")
    return ModelConfig(**{**model.__dict__, "filters": filters})


def _apply_augment_flags(args, augment):
    for flag, key in _AUGMENT_KEYS.items():
        if getattr(args, flag) is not None:
            setattr(augment, key, getattr(args, flag))
    if args.vector_channels is not None:
        augment.vector_channels = _int_list(args.vector_channels, "--vector-channels")


def _int_list(text, flag):
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} must be ints separated by commas. Received: {text!r}") from None


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    if args.objective is not None and args.pretrain is None:
        raise ConfigError("--objective belongs to pretraining; use it with --pretrain DOMAIN")
    if args.transfer is not None:
        return _run_transfer(args)
    if args.pretrain is not None:
        return _run_pretrain(args)
    config = build_config(args)
    result = _carry_out("source", config, quiet=args.quiet)
    _print_result(result, config.source, args.quiet)
    return 0


def _carry_out(kind, config, *, quiet):
    """Plan the run (every check, without the backend: a mistake costs no start-up), then start the backend and run.

    ``kind`` is ``"source"``, ``"transfer"`` or ``"pretrain"``: ``plan_<kind>``
    of :mod:`convlstm_tl.training.plans`, then ``run_<kind>`` of the driver
    module :mod:`convlstm_tl.training.<kind>`, imported only now since it imports Keras.
    """
    from convlstm_tl.training import plans

    plan = getattr(plans, f"plan_{kind}")(config)
    import_backend_quietly()
    driver = importlib.import_module(f"convlstm_tl.training.{kind}")
    return getattr(driver, f"run_{kind}")(plan, verbose=0 if quiet else "auto")


def _run_transfer(args):
    config = build_transfer_config(args)
    result = _carry_out("transfer", config, quiet=args.quiet)
    _print_result(result, config.target, args.quiet)
    return 0


def _run_pretrain(args):
    config = build_pretrain_config(args)
    result = _carry_out("pretrain", config, quiet=args.quiet)
    m = result.metrics
    print(f"run {result.run_dir}: {config.domain} {m['objective']} test loss {m['loss']:.4f} (baseline,"
          f" {m['baseline']}: {m['baseline_loss']:.4f}; {m['epochs_run']} epochs, {m['train_seconds']:.1f} s);"
          f" transfer its body with --transfer TARGET --from {result.run_dir.name}")
    return 0


def _print_result(result, domain, quiet):
    m = result.metrics
    line = (f"run {result.run_dir}: {domain} test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}"
            f" on {m['n_test']} samples ({m['epochs_run']} epochs, best {m['best_epoch']}, batch {m['batch_size']},"
            f" {m['train_seconds']:.1f} s)")
    if "refit" in m:
        line += f"; refit on train + val for {sum(m['refit']['epochs'])} epochs"
    if "ensemble" in m:
        line += (f"; ensemble of {m['ensemble']['members']} (members' mean accuracy"
                 f" {m['ensemble']['member_accuracy_mean']:.4f})")
    if "source_test" in m:
        line += f"; keeps {m['source_test']['accuracy']:.4f} on {m['source_test']['domain']}"
    print(line)
    if not quiet:
        print((result.run_dir / "report.txt").read_text())


# config field -> the flag that sets it, for error lines (see convlstm_tl.cli.run_main)
FLAGS = {
    **{key: f"--{key.replace('_', '-')}" for key in (*_SHARED_KEYS, *_TRANSFER_KEYS, "objective")},
    **{key: f"--{flag.replace('_', '-')}" for flag, key in _MODEL_KEYS.items() if key is not None},
    **{key: f"--{flag.replace('_', '-')}" for flag, key in _AUGMENT_KEYS.items()},
    "filters": "--filters", "vector_channels": "--vector-channels",
    "source": "--source DOMAIN", "target": "--transfer TARGET", "source_run": "--from RUN",
    "domain": "--pretrain DOMAIN",
}


def cli(argv=None):
    """Console-script entry point."""
    sys.exit(run_main(main, argv, prog=PROG, flags=FLAGS))


if __name__ == "__main__":
    cli()
