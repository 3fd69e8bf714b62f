"""``python -m convlstm_tl.evaluate``: the entry point; the command line lives in :mod:`convlstm_tl.cli.evaluate`."""

from convlstm_tl.cli.evaluate import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
