"""Converters that write domain files for ``convlstm_tl``.

Each converter is a submodule with a library function (returns what it wrote)
and a subcommand of ``python -m data_prep`` (see :mod:`data_prep.__main__`).
Importing this package does nothing else.
"""
