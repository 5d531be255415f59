"""The layers a series classifier puts around a zoo body.

``tasks.export.load_keras`` registers them before loading a classify export's
``model.keras`` (the SavedModel needs nothing).
"""

from __future__ import annotations

import keras
from keras import ops


def _check_timesteps(timesteps, minimum: int) -> int:
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"Received an invalid value for argument timesteps, expected {expected}, got {timesteps!r}")
    return timesteps


@keras.saving.register_keras_serializable(package="seqzoo")
class LengthMask(keras.layers.Layer):
    """``[values, lengths] -> values`` with steps ``t >= length`` zeroed and masked for the RNN.

    ``where`` rather than a product, so NaN or any other padding is harmless.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    @staticmethod
    def _mask(x, lengths):
        steps = ops.cumsum(ops.ones_like(x[:, :, 0], dtype="int32"), axis=1)  # 1..T, also for symbolic T
        return steps <= ops.expand_dims(ops.cast(lengths, "int32"), 1)  # (batch, time)

    def call(self, inputs):
        x, lengths = inputs
        return ops.where(ops.expand_dims(self._mask(x, lengths), -1), x, ops.zeros_like(x))

    def compute_mask(self, inputs, mask=None):
        return self._mask(*inputs)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="seqzoo")
class FitLength(keras.layers.Layer):
    """Crop or zero-pad the time axis to exactly ``timesteps`` (for models with per-step weights)."""

    def __init__(self, timesteps: int, **kwargs):
        super().__init__(**kwargs)
        self.timesteps = _check_timesteps(timesteps, 1)

    def call(self, x):
        x = x[:, : self.timesteps]
        x = ops.pad(x, [[0, 0], [0, self.timesteps - ops.shape(x)[1]], [0, 0]])
        return ops.reshape(x, (-1, self.timesteps, x.shape[-1]))  # (batch, T, channels)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.timesteps, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "timesteps": self.timesteps}


@keras.saving.register_keras_serializable(package="seqzoo")
class Resample(keras.layers.Layer):
    """``[values, lengths] -> (batch, timesteps, channels)``: each series' real steps stretched or
    squeezed onto ``timesteps`` evenly spaced points by linear interpolation.

    Every series then spans the same axis whatever its length, the preprocessing behind the
    published FCN/ResNet results on variable-length UEA sets; the padding is never read.
    """

    def __init__(self, timesteps: int, **kwargs):
        super().__init__(**kwargs)
        self.timesteps = _check_timesteps(timesteps, 2)

    def call(self, inputs):
        x, lengths = inputs
        # (batch, 1) index of the last real step; a length beyond the padded axis reads its last step
        last = ops.expand_dims(ops.clip(ops.cast(lengths, "int32"), 1, ops.shape(x)[1]) - 1, 1)
        where = ops.cast(last, x.dtype) * ops.linspace(0.0, 1.0, self.timesteps, dtype=x.dtype)  # (batch, N)
        below = ops.floor(where)
        weight = ops.expand_dims(where - below, -1)  # (batch, N, 1)
        below = ops.cast(below, "int32")
        above = ops.minimum(below + 1, last)

        def gather(index):  # x[b, index[b, n], :]
            index = ops.repeat(ops.expand_dims(index, -1), ops.shape(x)[-1], axis=-1)
            return ops.take_along_axis(x, index, axis=1)

        return gather(below) * (1.0 - weight) + gather(above) * weight

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.timesteps, input_shape[0][2])

    def get_config(self):
        return {**super().get_config(), "timesteps": self.timesteps}


@keras.saving.register_keras_serializable(package="seqzoo")
class ConvFrontEnd(keras.layers.Layer):
    """Same-padded ``Conv1D`` + ReLU layers over the real steps, the mask passed on unchanged.

    Local features for the recurrent body to read, as in LSTM-FCN. Padded steps are
    zeroed before every convolution, so a sequence's last steps never see the padding.
    """

    def __init__(self, filters: int, kernel_sizes: tuple[int, ...] = (5, 3), **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.filters = filters
        self.kernel_sizes = tuple(kernel_sizes)
        self.convs = [
            keras.layers.Conv1D(filters, k, padding="same", activation="relu", name=f"conv_{i}")
            for i, k in enumerate(self.kernel_sizes)
        ]

    def build(self, input_shape):
        shape = input_shape
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, x, mask=None):
        keep = None if mask is None else ops.expand_dims(ops.cast(mask, x.dtype), -1)
        for conv in self.convs:
            x = conv(x if keep is None else x * keep)
        return x if keep is None else x * keep

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_sizes": list(self.kernel_sizes)}


@keras.saving.register_keras_serializable(package="seqzoo")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation over a sequence's channels (Hu et al. 2018), as MLSTM-FCN puts it
    after its first two convolution blocks: each channel is scaled by a gate in (0, 1) computed
    from every channel's mean over the real steps, so the branch can damp the channels that do
    not tell this series' class apart.
    """

    def __init__(self, channels: int, ratio: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.channels, self.ratio = channels, ratio
        self.hidden = max(1, channels // ratio)
        self.pool = keras.layers.GlobalAveragePooling1D(name="squeeze_pool")
        self.squeeze = keras.layers.Dense(
            self.hidden, activation="relu", kernel_initializer="he_normal", name="squeeze"
        )
        self.excite = keras.layers.Dense(channels, activation="sigmoid", kernel_initializer="he_normal", name="excite")

    def build(self, input_shape):
        self.squeeze.build((input_shape[0], self.channels))
        self.excite.build((input_shape[0], self.hidden))

    def call(self, x, mask=None):
        gates = self.excite(self.squeeze(self.pool(x, mask=mask)))  # (batch, channels)
        return x * ops.expand_dims(gates, 1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="seqzoo")
class FCNBranch(keras.layers.Layer):
    """The fully convolutional network of LSTM-FCN, read beside the recurrent body: three blocks of
    same-padded ``Conv1D``, batch normalization and ReLU (``filters``, ``2 * filters``, ``filters``
    channels; kernels 8, 5, 3), then the mean over the real steps: ``(batch, filters)``.

    Padded steps are zeroed before every convolution and left out of the batch statistics and the
    mean, so a sequence's padding never changes its features. ``squeeze_excite`` adds a
    :class:`SqueezeExcite` after the first two blocks (MLSTM-FCN).
    """

    KERNELS = (8, 5, 3)

    def __init__(self, filters: int, squeeze_excite: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.filters, self.squeeze_excite = filters, squeeze_excite
        widths = (filters, 2 * filters, filters)
        self.excites = (
            [SqueezeExcite(w, name=f"squeeze_excite_{i}") for i, w in enumerate(widths[:2])] if squeeze_excite else []
        )
        self.convs = [
            keras.layers.Conv1D(w, k, padding="same", name=f"conv_{i}")
            for i, (w, k) in enumerate(zip(widths, self.KERNELS, strict=True))
        ]
        # Momentum 0.9 (PyTorch's default) rather than Keras's 0.99: a UCR set of 40 series gets a few
        # hundred updates, after which 0.99's moving variance still leans on its initial 1 and
        # inference normalizes with the wrong scale.
        self.norms = [keras.layers.BatchNormalization(momentum=0.9, name=f"batch_norm_{i}") for i in range(len(widths))]
        self.pool = keras.layers.GlobalAveragePooling1D(name="mean_pool")

    def build(self, input_shape):
        shape = input_shape
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
            if i < len(self.excites):
                self.excites[i].build(shape)

    def call(self, x, training=None, mask=None):
        keep = None if mask is None else ops.expand_dims(ops.cast(mask, x.dtype), -1)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = conv(x if keep is None else x * keep)
            x = ops.relu(norm(x, training=training, mask=mask))
            if i < len(self.excites):
                x = self.excites[i](x, mask=mask)
        return self.pool(x, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return None  # pooled: one vector per sequence

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "squeeze_excite": self.squeeze_excite}
