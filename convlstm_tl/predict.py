"""``python -m convlstm_tl.predict``: the entry point; the command line lives in :mod:`convlstm_tl.cli.predict`."""

from convlstm_tl.cli.predict import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
