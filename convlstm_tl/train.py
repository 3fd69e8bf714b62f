"""``python -m convlstm_tl.train``: train a ConvLSTM classifier on a domain.

Settings come from the defaults of :class:`convlstm_tl.config.TrainConfig`,
then ``--config FILE`` (JSON, same keys as a run's ``config.json`` "config"
entry), then the flags given on the command line.
"""

import sys

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main

PROG = "python -m convlstm_tl.train"

# flag dest -> (config key, is a ModelConfig key)
_TRAIN_KEYS = ("source", "name", "data_dir", "runs_dir", "epochs", "batch_size", "lr", "patience", "seed",
               "overwrite")
_MODEL_KEYS = {"kernel": "kernel_size", "dropout": "block_dropout", "recurrent_dropout": "recurrent_dropout",
               "pool": "pool_size", "head_units": "head_units", "head_dropout": "head_dropout", "l2": "l2"}


def parse_args(argv=None):
    """Parse the command line; every option defaults to None (= not given)."""
    parser = ArgumentParser(prog=PROG, description="Train a ConvLSTM classifier on a source domain.")
    parser.add_argument("--source", metavar="DOMAIN", help="domain to train on: <data-dir>/DOMAIN.h5")
    parser.add_argument("--name", help="run name (default: the domain's name)")
    parser.add_argument("--config", metavar="FILE", help="JSON file of settings; flags override it")
    parser.add_argument("--data-dir", help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", help="folder of run directories (default: ./runs)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 40)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 32)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--patience", type=int,
                        help="early-stopping patience on val loss, best weights restored; 0 = off (default 8)")
    parser.add_argument("--seed", type=int, help="random seed (default 0); the same seed repeats a CPU run")
    parser.add_argument("--blocks", type=int, help="number of ConvLSTM blocks (default 2)")
    parser.add_argument("--filters", help="filters per block, e.g. 32 or 32,64 (default 32,32)")
    parser.add_argument("--kernel", type=int, help="kernel size k: (1,k) for H == 1 frames, (k,k) otherwise")
    parser.add_argument("--dropout", type=float, help="dropout after each block")
    parser.add_argument("--recurrent-dropout", type=float, help="dropout on the ConvLSTM recurrent state")
    parser.add_argument("--pool", type=int, help="spatial max-pool size after each block (1 = none)")
    parser.add_argument("--head-units", type=int, help="units of the head's dense layer")
    parser.add_argument("--head-dropout", type=float, help="dropout before the softmax")
    parser.add_argument("--l2", type=float, help="L2 penalty on kernels")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser.parse_args(argv)


def build_config(args):
    """Turn parsed arguments into a validated :class:`TrainConfig`."""
    from convlstm_tl.config import ConfigError, ModelConfig, TrainConfig, from_dict, load_json

    config = from_dict(TrainConfig, load_json(args.config), where=args.config) if args.config else TrainConfig()
    for key in _TRAIN_KEYS:
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    for flag, key in _MODEL_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(config.model, key, value)
    filters = config.model.filters
    if args.filters is not None:
        try:
            filters = tuple(int(f) for f in args.filters.split(","))
        except ValueError:
            raise ConfigError(f"--filters must be ints separated by commas. Received: {args.filters!r}") from None
    if args.blocks is not None:
        if args.blocks < 1:
            raise ConfigError(f"--blocks must be at least 1. Received: --blocks {args.blocks}")
        if len(filters) == 1 or args.filters is None:
            filters = (filters[0],) * args.blocks
        elif len(filters) != args.blocks:
            raise ConfigError(f"--blocks {args.blocks} disagrees with --filters {args.filters}; give one of them")
    config.model = ModelConfig(**{**config.model.__dict__, "filters": filters})
    config.validate()
    return config


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    config = build_config(args)
    # Check the cheap things before paying for the backend's start-up.
    from convlstm_tl.domain import find_domain, open_domain
    from convlstm_tl.runs import check_run_target

    info = open_domain(find_domain(config.source, config.data_dir or None))
    check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite)
    import_backend_quietly()
    from convlstm_tl.training import train_source

    result = train_source(config, info=info, verbose=0 if args.quiet else "auto")
    m = result.metrics
    print(f"run {result.run_dir}: {config.source} test accuracy {m['accuracy']:.4f}, "
          f"macro-F1 {m['macro_f1']:.4f} on {m['n_test']} samples "
          f"({m['epochs_run']} epochs, {m['train_seconds']:.1f} s)")
    if not args.quiet:
        print((result.run_dir / "report.txt").read_text())
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    cli()
