"""Importing this module registers every Keras object of the toolkit that a saved file can name.

It imports leaf modules only (each imports Keras and nothing of the toolkit),
because it runs while Keras itself finishes importing.

``import convlstm_tl`` imports it as soon as Keras is imported, so plain
``keras.saving.load_model`` reloads any run's ``model.keras``.
"""

from convlstm_tl.models.adaptation import DomainAlignment, GradientReversal, InformationMaximization
from convlstm_tl.models.layers import FastConvLSTM2D
from convlstm_tl.models.losses import FramePredictionLoss
from convlstm_tl.models.metrics import SparseMacroF1
from convlstm_tl.models.optimizers import LayerRateAdam

__all__ = ["DomainAlignment", "FastConvLSTM2D", "FramePredictionLoss", "GradientReversal", "InformationMaximization",
           "LayerRateAdam", "SparseMacroF1"]
