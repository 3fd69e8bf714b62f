"""Importing this module registers every Keras object of the toolkit that a saved file can name.

``import convlstm_tl`` imports it as soon as Keras is imported, so plain
``keras.saving.load_model`` reloads any run's ``model.keras``.
"""

from convlstm_tl.models.layers import FastConvLSTM2D
from convlstm_tl.models.autoencoder import FramePredictionLoss
from convlstm_tl.models.optimizers import LayerRateAdam

__all__ = ["FastConvLSTM2D", "FramePredictionLoss", "LayerRateAdam"]
