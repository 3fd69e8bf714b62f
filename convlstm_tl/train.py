"""``python -m convlstm_tl.train``: the entry point; the command line lives in :mod:`convlstm_tl.cli.train`."""

from convlstm_tl.cli.train import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
