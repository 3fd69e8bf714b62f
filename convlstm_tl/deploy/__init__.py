"""Using a trained run outside training: predict on new recordings, export the model.

- :mod:`convlstm_tl.deploy.inputs`: the samples to predict on, from a domain
  file, an ``.npz`` or a long-format CSV cut as the run's domain was;
- :mod:`convlstm_tl.deploy.predict`: class probabilities per sample or per
  recording (``python -m convlstm_tl.predict``);
- :mod:`convlstm_tl.deploy.export`: the model as stock Keras, SavedModel,
  TFLite or ONNX, each checked against the run's own predictions
  (``python -m convlstm_tl.export``).
"""
