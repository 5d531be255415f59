"""An RNN unrolled over a fixed number of steps with its own weights at every step.

This is what a recurrent network would be *without* weight sharing over time.
It cannot be a Keras ``RNN`` cell (a cell never learns its time index), so it is
one layer that knows its number of timesteps ``T`` and holds kernels of shape
``(T, in, gates * units)``.
"""

from __future__ import annotations

import random

import keras
from keras import ops

_GATES = {"simple": 1, "lstm": 4}


@keras.saving.register_keras_serializable(package="seqzoo")
class UnsharedRNN(keras.layers.Layer):
    """Unrolled RNN whose kernel, recurrent kernel and bias differ at every step.

    Args:
        units: positive integer, dimensionality of the output space.
        timesteps: positive integer, the only sequence length accepted.
        cell: ``"simple"`` (``h = tanh(x W_t + h U_t + b_t)``) or ``"lstm"``
            (Keras LSTM equations, gate order i, f, c, o, with per-step gates).
        return_sequences: return the whole sequence ``(batch, T, units)`` instead
            of the last output ``(batch, units)``.
        unit_forget_bias: for ``cell="lstm"``, start the forget-gate bias at 1.

    Masked steps carry the state unchanged and output zeros in sequences.
    Parameters: ``T * gates * units * (in + units + 1)``, linear in ``T``.
    """

    def __init__(
        self,
        units,
        timesteps,
        cell="simple",
        return_sequences=False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("units", units), ("timesteps", timesteps)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Received an invalid value for argument {name}, expected a positive integer, got {value!r}"
                )
        if cell not in _GATES:
            raise ValueError(f"Received cell={cell!r} for UnsharedRNN, expected one of {', '.join(_GATES)}")
        self.units = units
        self.timesteps = timesteps
        self.cell = cell
        self.return_sequences = return_sequences
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.supports_masking = True

    def _check_shape(self, shape) -> None:
        if len(shape) != 3:
            raise ValueError(
                f"UnsharedRNN expects input of rank 3 (batch, timesteps, features), got shape {tuple(shape)}"
            )
        if shape[1] != self.timesteps:
            got = "an unknown length" if shape[1] is None else f"length {shape[1]}"
            raise ValueError(
                f"UnsharedRNN has weights for exactly {self.timesteps} timesteps but "
                f"received {got} (input shape {tuple(shape)}). Pad or crop sequences "
                f"to {self.timesteps} steps (a fixed seq_len or max_length), or "
                f"build the model for the length you need."
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        steps, features, gates = self.timesteps, input_shape[-1], _GATES[self.cell]
        width = gates * self.units
        # Per-step kernels: one (in, width) / (units, width) matrix per timestep.
        self.kernel = self.add_weight(
            shape=(steps, features, width), name="kernel", initializer=self._per_step(self.kernel_initializer)
        )
        self.recurrent_kernel = self.add_weight(
            shape=(steps, self.units, width),
            name="recurrent_kernel",
            initializer=self._per_step(self.recurrent_initializer),
        )
        bias_init = self.bias_initializer
        if self.cell == "lstm" and self.unit_forget_bias:
            units, base = self.units, self.bias_initializer

            def bias_init(shape, dtype=None):
                ones = ops.ones((shape[0], units), dtype=dtype)
                zeros = base((shape[0], units), dtype=dtype)
                rest = base((shape[0], 2 * units), dtype=dtype)
                return ops.concatenate([zeros, ones, rest], axis=-1)

        self.bias = self.add_weight(shape=(steps, width), name="bias", initializer=bias_init)

    @staticmethod
    def _per_step(initializer):
        """Initialize each step's matrix independently (orthogonal needs 2-D)."""

        def init(shape, dtype=None):
            config = initializer.get_config()
            if "seed" not in config:  # deterministic initializers (zeros, constant)
                return ops.stack([initializer(shape[1:], dtype=dtype)] * shape[0])
            # A Keras initializer returns identical values on every call, so give
            # each step its own seed (drawn from Python's RNG, which
            # keras.utils.set_random_seed seeds).
            base = random.randrange(2**30) if config["seed"] is None else config["seed"]
            steps = [
                type(initializer).from_config({**config, "seed": base + t})(shape[1:], dtype=dtype)
                for t in range(shape[0])
            ]
            return ops.stack(steps)

        return init

    def call(self, inputs, mask=None):
        self._check_shape(inputs.shape)
        batch = ops.shape(inputs)[0]
        # Input projection for all steps at once: (batch, T, gates * units).
        projected = ops.einsum("bti,tio->bto", inputs, self.kernel) + self.bias
        h = ops.zeros((batch, self.units), dtype=self.compute_dtype)
        c = h
        outputs = []
        for t in range(self.timesteps):
            z = projected[:, t] + ops.matmul(h, self.recurrent_kernel[t])
            if self.cell == "simple":
                h_new, c_new = ops.tanh(z), c
            else:
                i, f, g, o = ops.split(z, 4, axis=-1)
                c_new = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
                h_new = ops.sigmoid(o) * ops.tanh(c_new)
            if mask is None:
                h, c, out = h_new, c_new, h_new
            else:
                keep = ops.expand_dims(ops.cast(mask[:, t], "bool"), -1)
                h = ops.where(keep, h_new, h)
                c = ops.where(keep, c_new, c)
                out = ops.where(keep, h_new, ops.zeros_like(h_new))
            if self.return_sequences:
                outputs.append(out)
        return ops.stack(outputs, axis=1) if self.return_sequences else h

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], self.timesteps, self.units)
        return (input_shape[0], self.units)

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    @staticmethod
    def count_params_for(units: int, timesteps: int, features: int, cell: str = "simple") -> int:
        """Closed form: ``T * gates * units * (features + units + 1)``."""
        return timesteps * _GATES[cell] * units * (features + units + 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "timesteps": self.timesteps,
                "cell": self.cell,
                "return_sequences": self.return_sequences,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config
