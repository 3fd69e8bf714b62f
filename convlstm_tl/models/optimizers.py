"""Optimizers of the toolkit: Adam with a learning rate per group of layers."""

import keras


@keras.saving.register_keras_serializable(package="convlstm_tl")
class LayerRateAdam(keras.optimizers.Adam):
    """Adam that scales the learning rate of variables under given layers.

    Args:
        learning_rate: the base (head) learning rate.
        scaled_prefixes: variable path prefixes, e.g. ``["block_1/"]``.
        scale: factor applied to their learning rate (body_lr / lr).
        prefix_scales: more groups, ``{prefix: factor}`` (e.g. ``{"adapter/": 10.0}``);
            they take precedence over ``scaled_prefixes``.
        **kwargs: other ``keras.optimizers.Adam`` arguments.
    """

    def __init__(self, learning_rate=1e-3, *, scaled_prefixes=(), scale=1.0, prefix_scales=None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.scaled_prefixes = tuple(scaled_prefixes)
        self.scale = float(scale)
        self.prefix_scales = {str(prefix): float(factor) for prefix, factor in (prefix_scales or {}).items()}
        self._rate_scales = []

    def build(self, variables):
        super().build(variables)
        self._rate_scales = [self._scale_of(variable.path) for variable in variables]

    def _scale_of(self, path):
        for prefix, factor in self.prefix_scales.items():
            if path.startswith(prefix):
                return factor
        return self.scale if path.startswith(self.scaled_prefixes) else 1.0

    def update_step(self, gradient, variable, learning_rate):
        # The backend may hand us its own variable type; the index maps it
        # back to the Keras variable whose path we matched in build().
        factor = self._rate_scales[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = learning_rate * factor
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(scaled_prefixes=list(self.scaled_prefixes), scale=self.scale, prefix_scales=self.prefix_scales)
        return config
