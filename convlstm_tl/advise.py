"""``python -m convlstm_tl.advise``: the entry point; the command line lives in :mod:`convlstm_tl.cli.advise`."""

from convlstm_tl.cli.advise import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
