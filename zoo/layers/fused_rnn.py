"""``keras.layers.LSTM`` and ``keras.layers.GRU`` with a fused, XLA-compiled recurrence on CPU.

Keras runs a recurrent layer on CPU as a graph loop of small ops per time step and
lets TensorFlow differentiate that loop, which saves every intermediate and adds
weight-gradient matmuls to every step. :class:`FusedLSTM` and :class:`FusedGRU` keep
Keras's layers, weights and equations (LSTM gates i, f, c, o; GRU gates z, r, h with
``reset_after``) and replace only that loop with:

- a forward pass that projects all inputs in one matmul, then runs the recurrence
  (``h U`` plus the elementwise cell) in an XLA-compiled loop, keeping what the
  backward pass needs of every step (``zoo.layers.fused.cells``);
- a hand-written backward pass (``tf.custom_gradient``, ``zoo.layers.fused.gradient``): an
  XLA-compiled reverse loop that carries only the state gradients through ``dz U^T``, then the
  input and weight gradients of all steps as a few large matmuls.

The large matmuls run outside XLA (oneDNN) in the layer's compute dtype, and the loops'
per-step recurrent matmuls take their operands in it too (accumulating in float32); states,
gates and the elementwise cell are always float32 (what the LSTM loop saves for its backward
pass is stored in the compute dtype). Under ``mixed_bfloat16`` that gives the matmuls bfloat16's
speed, as PyTorch's bf16 autocast does, while the states stay in float32 (Keras's own loop
rounds them to bfloat16 every step); bfloat16 arrays cross the loops' boundary as bit patterns
(``zoo.layers.fused.bf16``). Everything is batch-major, as Keras's layers are: no sequence is
transposed. XLA's CPU loop runs on one core, so the batch is split into chunks whose loops run
concurrently, one per core.

In float32 outputs and gradients match Keras's layers to round-off; in bfloat16 they
are no further from float32 than Keras's bfloat16 loop (both tested). Speed is in
``benchmarks/RESULTS.md`` (``python -m benchmarks.train_speed``). Where the fused loop
does not apply, the layers are exactly Keras's: on a GPU (Keras's cuDNN path), with a
mask, with dropout while training, in float16, with other activations, or when built
with ``fused=False`` (``zoo.ModelConfig(fused=False)``), to A/B the two loops or fall back.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import activations

from zoo.layers.carry import CarriedState
from zoo.layers.fused.gradient import gru_sequence, lstm_sequence


class _Fused:
    """Takes the fused loop where it applies and Keras's own loop everywhere else.

    ``fused=False`` turns the fused loop off for good: the layer then runs exactly Keras's
    code path (same weights, so a model can switch either way and keep its checkpoint).
    """

    def __init__(self, *args, fused: bool = True, **kwargs):
        if not isinstance(fused, bool):
            raise ValueError(f"Received an invalid value for argument fused, expected a bool, got {fused!r}")
        super().__init__(*args, **kwargs)
        self.use_fused = fused

    def get_config(self) -> dict:
        return {**super().get_config(), "fused": self.use_fused}

    def _fusable(self) -> bool:
        return True

    def fused(self, mask=None, training=False) -> bool:
        """Whether a call with this mask and training flag takes the fused loop."""
        return (
            self.use_fused
            and keras.backend.backend() == "tensorflow"
            and not tf.config.list_logical_devices("GPU")
            and self.compute_dtype in ("float32", "bfloat16")
            and mask is None
            and not self.unroll
            and self.use_bias
            and not (training and (self.dropout or self.recurrent_dropout))
            and self.cell.activation is activations.tanh
            and self.cell.recurrent_activation is activations.sigmoid
            and self._fusable()
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not self.fused(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if self.go_backwards:  # Keras's CPU loop returns outputs in the order it ran them
            sequences = tf.reverse(sequences, [1])
        cell = self.cell
        outputs, *states = self._sequence(sequences, cell.kernel, cell.recurrent_kernel, cell.bias, *initial_state)
        return states[0], outputs, states


@keras.saving.register_keras_serializable(package="seqzoo")
class FusedLSTM(CarriedState, _Fused, keras.layers.LSTM):
    """``keras.layers.LSTM`` (same arguments, weights and results) with the fused CPU loop;
    ``fused=False`` keeps Keras's own loop."""

    _sequence = staticmethod(lstm_sequence)


@keras.saving.register_keras_serializable(package="seqzoo")
class FusedGRU(CarriedState, _Fused, keras.layers.GRU):
    """``keras.layers.GRU`` (same arguments, weights and results) with the fused CPU loop
    (for ``reset_after=True``, Keras's default); ``fused=False`` keeps Keras's own loop."""

    _sequence = staticmethod(gru_sequence)

    def _fusable(self) -> bool:
        return self.reset_after
