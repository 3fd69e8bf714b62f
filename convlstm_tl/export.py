"""``python -m convlstm_tl.export``: the entry point; the command line lives in :mod:`convlstm_tl.cli.export`."""

from convlstm_tl.cli.export import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
