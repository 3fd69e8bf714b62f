"""``python -m convlstm_tl.baseline``: the entry point; the command line lives in :mod:`convlstm_tl.cli.baseline`."""

from convlstm_tl.cli.baseline import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
