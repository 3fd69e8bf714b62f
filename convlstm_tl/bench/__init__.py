"""The benchmark of the fast ConvLSTM layer against the stock one, and of the
data path (``python -m convlstm_tl.bench``)."""
