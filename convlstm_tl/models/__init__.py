"""The networks: the fast ConvLSTM layer, the classifier (named body and head),
its backbone view, and the pretraining autoencoder."""
