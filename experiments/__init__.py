"""Experiment grids for convlstm_tl: studies of options × seeds, run through the library.

- :mod:`experiments.grid`: grid files and their expansion into cells.
- :mod:`experiments.runner`: run the cells (resumable) and write results, summary and plots.
- :mod:`experiments.summary`: mean ± std per setting, best settings.
- :mod:`experiments.plots`: accuracy, time and learning-curve figures.
- :mod:`experiments.advise_check`: the transfer advisor against a grid's best strategy, or a suite's best method.

Command line: ``python -m experiments run GRID.json`` and
``python -m experiments advise-check GRID.json`` (or ``--suite SUITE.json``).
"""
