"""convlstm_tl: transfer learning with ConvLSTM sequence classifiers.

Modules, from data to results:

- :mod:`convlstm_tl.domain`: read, write and validate domain files (HDF5).
- :mod:`convlstm_tl.dataset`: stream batches from a domain file to Keras.
- :mod:`convlstm_tl.config`: typed run configurations.
- :mod:`convlstm_tl.layers`: the fast ConvLSTM layer and weight converters.
- :mod:`convlstm_tl.model`: the ConvLSTM classifier (named body and head).
- :mod:`convlstm_tl.training`: train and write a run directory.
- :mod:`convlstm_tl.metrics`: classification metrics as data.

Command lines: ``python -m convlstm_tl.train``; speed: ``python -m convlstm_tl.bench``.
"""

__version__ = "0.1.0"
