"""``keras.layers.LSTM`` with a fused, XLA-compiled recurrence on CPU.

Keras runs an LSTM on CPU as a graph loop of small ops per time step and lets
TensorFlow differentiate that loop, which saves every intermediate and adds a
weight-gradient matmul per step. :class:`FusedLSTM` keeps Keras's layer, weights
and equations (gate order i, f, c, o) and replaces only that loop with:

- a forward pass that projects all inputs in one matmul, then runs the recurrence
  (``h U`` plus the elementwise cell) in one XLA-compiled loop, keeping ``h``, ``c``
  and the gate activations of every step;
- a hand-written backward pass (``tf.custom_gradient``): one XLA-compiled reverse
  loop that only carries ``dh`` and ``dc`` through ``dz U^T``, then the weight
  gradients of all steps as three large matmuls.

Measured in ``benchmarks/RESULTS.md`` (``python -m benchmarks.train_speed``).
Outputs and gradients match ``keras.layers.LSTM`` to float32 round-off (tested).
Where the fused loop does not apply, the layer is exactly ``keras.layers.LSTM``:
on a GPU (Keras's cuDNN path), with a mask, with dropout while training, with
a non-float32 compute dtype (XLA's CPU bfloat16 matmuls are slower than
oneDNN's), or with other activations.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import activations


@tf.function(jit_compile=True)
def _forward(x, kernel, recurrent_kernel, bias, h0, c0):
    """x (T, B, in) time-major -> h, c, gates of every step (T, B, .) and the final h, c."""
    steps, units = tf.shape(x)[0], h0.shape[-1]
    xw = tf.einsum("tbi,ik->tbk", x, kernel) + bias  # every step's input projection at once

    def step(t, h, c, hs, cs, gates):
        z = xw[t] + tf.matmul(h, recurrent_kernel)
        i, f, _, o = tf.split(tf.sigmoid(z), 4, axis=1)
        g = tf.tanh(z[:, 2 * units : 3 * units])
        c = f * c + i * g
        h = o * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gates.write(t, tf.concat([i, f, g, o], 1))

    arrays = [tf.TensorArray(x.dtype, size=steps, element_shape=s) for s in (h0.shape, c0.shape, xw.shape[1:])]
    _, h, c, hs, cs, gates = tf.while_loop(lambda t, *_: t < steps, step, (0, h0, c0, *arrays))
    return hs.stack(), cs.stack(), gates.stack(), h, c


@tf.function(jit_compile=True)
def _backward(x, kernel, recurrent_kernel, h0, c0, hs, cs, gates, d_hs, dh, dc):
    """Gradients of (x, kernel, recurrent_kernel, bias, h0, c0), all time-major like ``_forward``."""
    steps, units = tf.shape(x)[0], h0.shape[-1]
    c_prev = tf.concat([c0[None], cs[:-1]], 0)
    recurrent_t = tf.transpose(recurrent_kernel)

    def step(t, dh, dc, dzs):
        i, f, g, o = tf.split(gates[t], 4, axis=1)
        tanh_c = tf.tanh(cs[t])
        dh = dh + d_hs[t]
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = tf.concat(
            [dc * g * i * (1 - i), dc * c_prev[t] * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], 1
        )
        return t - 1, tf.matmul(dz, recurrent_t), dc * f, dzs.write(t, dz)

    _, dh0, dc0, dzs = tf.while_loop(
        lambda t, *_: t >= 0, step, (steps - 1, dh, dc, tf.TensorArray(x.dtype, size=steps, element_shape=gates.shape[1:]))
    )
    dz = dzs.stack()  # (T, B, 4 units)
    h_prev = tf.concat([h0[None], hs[:-1]], 0)
    d_recurrent = tf.einsum("tbu,tbk->uk", h_prev, dz)
    d_kernel = tf.einsum("tbi,tbk->ik", x, dz)
    dx = tf.einsum("tbk,ik->tbi", dz, kernel)
    return dx, d_kernel, d_recurrent, tf.reduce_sum(dz, [0, 1]), dh0, dc0


@tf.custom_gradient
def _fused(x, kernel, recurrent_kernel, bias, h0, c0):
    # The compiled functions are opaque to autodiff: stop_gradient keeps an outer
    # tape from trying to differentiate them; ``grad`` below is their gradient.
    args = [tf.stop_gradient(v) for v in (tf.transpose(x, [1, 0, 2]), kernel, recurrent_kernel, bias, h0, c0)]
    hs, cs, gates, h, c = _forward(*args)
    # A trace for a more general shape (batch None, from a Keras graph) may have served this
    # call; put back the static shape of the outputs (a jit-compiled caller's loop needs it).
    hs.set_shape(args[0].shape[:-1] + h0.shape[-1:])
    h.set_shape(h0.shape)
    c.set_shape(c0.shape)

    def grad(d_outputs, dh, dc):
        xt, kernel_, recurrent_, _, h0_, c0_ = args
        dx, *rest = _backward(xt, kernel_, recurrent_, h0_, c0_, hs, cs, gates, tf.transpose(d_outputs, [1, 0, 2]), dh, dc)
        return (tf.transpose(dx, [1, 0, 2]), *rest)

    return (tf.transpose(hs, [1, 0, 2]), h, c), grad


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0):
    """Run Keras's LSTM equations over ``x`` (batch, T, in) from states ``h0, c0``.

    Returns ``(outputs (batch, T, units), h, c)``; differentiable in every argument.
    """
    return _fused(*[tf.convert_to_tensor(v) for v in (x, kernel, recurrent_kernel, bias, h0, c0)])


@keras.saving.register_keras_serializable(package="seqzoo")
class FusedLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` (same arguments, weights and results) with the fused CPU loop."""

    def fused(self, mask=None, training=False) -> bool:
        """Whether a call with this mask and training flag takes the fused loop."""
        return (
            keras.backend.backend() == "tensorflow"
            and not tf.config.list_logical_devices("GPU")
            and self.compute_dtype == "float32"
            and mask is None
            and not self.unroll
            and self.use_bias
            and not (training and (self.dropout or self.recurrent_dropout))
            and self.cell.activation is activations.tanh
            and self.cell.recurrent_activation is activations.sigmoid
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not self.fused(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if self.go_backwards:  # Keras's CPU loop returns outputs in the order it ran them
            sequences = tf.reverse(sequences, [1])
        h0, c0 = initial_state
        cell = self.cell
        outputs, h, c = lstm_sequence(sequences, cell.kernel, cell.recurrent_kernel, cell.bias, h0, c0)
        return h, outputs, [h, c]
