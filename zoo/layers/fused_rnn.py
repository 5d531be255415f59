"""``keras.layers.LSTM`` and ``keras.layers.GRU`` with a fused, XLA-compiled recurrence on CPU.

Keras runs a recurrent layer on CPU as a graph loop of small ops per time step and
lets TensorFlow differentiate that loop, which saves every intermediate and adds
weight-gradient matmuls to every step. :class:`FusedLSTM` and :class:`FusedGRU` keep
Keras's layers, weights and equations (LSTM gates i, f, c, o; GRU gates z, r, h with
``reset_after``) and replace only that loop with:

- a forward pass that projects all inputs in one matmul, then runs the recurrence
  (``h U`` plus the elementwise cell) in one XLA-compiled loop, keeping the states
  and gate activations of every step;
- a hand-written backward pass (``tf.custom_gradient``): one XLA-compiled reverse
  loop that carries only the state gradients through ``dz U^T``, then the weight
  gradients of all steps as a few large matmuls.

Outputs and gradients match Keras's layers to float32 round-off (tested); speed is
in ``benchmarks/RESULTS.md`` (``python -m benchmarks.train_speed``). Where the fused
loop does not apply, the layers are exactly Keras's: on a GPU (Keras's cuDNN path),
with a mask, with dropout while training, with a non-float32 compute dtype (XLA's
CPU bfloat16 matmuls are slower than oneDNN's), or with other activations.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import activations

# Every loop function below is time-major: x (T, B, in), per-step arrays (T, B, .).


def _arrays(dtype, steps, *shapes):
    return [tf.TensorArray(dtype, size=steps, element_shape=s) for s in shapes]


@tf.function(jit_compile=True)
def _lstm_forward(x, kernel, recurrent_kernel, bias, h0, c0):
    """-> hs, (cs, gates i|f|g|o), final (h, c)."""
    steps, units = tf.shape(x)[0], h0.shape[-1]
    xw = tf.einsum("tbi,ik->tbk", x, kernel) + bias  # every step's input projection at once

    def step(t, h, c, hs, cs, gates):
        z = xw[t] + tf.matmul(h, recurrent_kernel)
        i, f, _, o = tf.split(tf.sigmoid(z), 4, axis=1)
        g = tf.tanh(z[:, 2 * units : 3 * units])
        c = f * c + i * g
        h = o * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gates.write(t, tf.concat([i, f, g, o], 1))

    arrays = _arrays(x.dtype, steps, h0.shape, c0.shape, xw.shape[1:])
    _, h, c, hs, cs, gates = tf.while_loop(lambda t, *_: t < steps, step, (0, h0, c0, *arrays))
    return hs.stack(), (cs.stack(), gates.stack()), (h, c)


@tf.function(jit_compile=True)
def _lstm_backward(x, kernel, recurrent_kernel, bias, h0, c0, hs, saved, d_hs, dh, dc):
    """-> dx, (d_kernel, d_recurrent_kernel, d_bias, dh0, dc0)."""
    cs, gates = saved
    steps = tf.shape(x)[0]
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

    _, dh0, dc0, dz = tf.while_loop(lambda t, *_: t >= 0, step, (steps - 1, dh, dc, *_arrays(x.dtype, steps, gates.shape[1:])))
    dz = dz.stack()  # (T, B, 4 units): the pre-activation gradients of every step
    h_prev = tf.concat([h0[None], hs[:-1]], 0)
    d_kernel, d_recurrent = tf.einsum("tbi,tbk->ik", x, dz), tf.einsum("tbu,tbk->uk", h_prev, dz)
    return tf.einsum("tbk,ik->tbi", dz, kernel), (d_kernel, d_recurrent, tf.reduce_sum(dz, [0, 1]), dh0, dc0)


@tf.function(jit_compile=True)
def _gru_forward(x, kernel, recurrent_kernel, bias, h0):
    """-> hs, (gates z|r|hh, recurrent h-projection), final (h,). ``bias`` is (2, 3 units):
    input and recurrent bias (Keras's ``reset_after=True``)."""
    steps = tf.shape(x)[0]
    xw = tf.einsum("tbi,ik->tbk", x, kernel) + bias[0]

    def step(t, h, hs, gates, rec_hs):
        x_z, x_r, x_h = tf.split(xw[t], 3, axis=1)
        rec_z, rec_r, rec_h = tf.split(tf.matmul(h, recurrent_kernel) + bias[1], 3, axis=1)
        z, r = tf.sigmoid(x_z + rec_z), tf.sigmoid(x_r + rec_r)
        hh = tf.tanh(x_h + r * rec_h)
        h = z * h + (1 - z) * hh
        return t + 1, h, hs.write(t, h), gates.write(t, tf.concat([z, r, hh], 1)), rec_hs.write(t, rec_h)

    arrays = _arrays(x.dtype, steps, h0.shape, xw.shape[1:], h0.shape)
    _, h, hs, gates, rec_hs = tf.while_loop(lambda t, *_: t < steps, step, (0, h0, *arrays))
    return hs.stack(), (gates.stack(), rec_hs.stack()), (h,)


@tf.function(jit_compile=True)
def _gru_backward(x, kernel, recurrent_kernel, bias, h0, hs, saved, d_hs, dh):
    """-> dx, (d_kernel, d_recurrent_kernel, d_bias, dh0)."""
    gates, rec_hs = saved
    steps = tf.shape(x)[0]
    h_prev = tf.concat([h0[None], hs[:-1]], 0)
    recurrent_t = tf.transpose(recurrent_kernel)

    def step(t, dh, d_inputs, d_recurrents):
        z, r, hh = tf.split(gates[t], 3, axis=1)
        dh = dh + d_hs[t]
        dz = dh * (h_prev[t] - hh) * z * (1 - z)
        dhh = dh * (1 - z) * (1 - hh * hh)
        dr = dhh * rec_hs[t] * r * (1 - r)
        d_recurrent = tf.concat([dz, dr, dhh * r], 1)  # gradient of h U + recurrent bias
        dh = dh * z + tf.matmul(d_recurrent, recurrent_t)
        return t - 1, dh, d_inputs.write(t, tf.concat([dz, dr, dhh], 1)), d_recurrents.write(t, d_recurrent)

    arrays = _arrays(x.dtype, steps, gates.shape[1:], gates.shape[1:])
    _, dh0, d_in, d_rec = tf.while_loop(lambda t, *_: t >= 0, step, (steps - 1, dh, *arrays))
    d_in, d_rec = d_in.stack(), d_rec.stack()  # (T, B, 3 units) each
    d_kernel, d_recurrent = tf.einsum("tbi,tbk->ik", x, d_in), tf.einsum("tbu,tbk->uk", h_prev, d_rec)
    d_bias = tf.stack([tf.reduce_sum(d_in, [0, 1]), tf.reduce_sum(d_rec, [0, 1])])
    return tf.einsum("tbk,ik->tbi", d_in, kernel), (d_kernel, d_recurrent, d_bias, dh0)


def _sequence(forward, backward, x, weights, states):
    """Run a fused loop over batch-major ``x`` (batch, T, in) from ``states``.

    Returns ``(outputs (batch, T, units), *final_states)``, differentiable in ``x``,
    every weight and every state.
    """

    @tf.custom_gradient
    def run(x, *params):
        # The compiled functions are opaque to autodiff: stop_gradient keeps an outer
        # tape from trying to differentiate them; ``grad`` below is their gradient.
        args = [tf.stop_gradient(v) for v in (tf.transpose(x, [1, 0, 2]), *params)]
        hs, saved, final = forward(*args)
        # A trace for a more general shape (batch None, from a Keras graph) may have served
        # this call; put back the static shapes (a jit-compiled caller's loop needs them).
        hs.set_shape(args[0].shape[:-1] + params[-1].shape[-1:])
        for state, initial in zip(final, params[-len(final) :]):
            state.set_shape(initial.shape)

        def grad(d_outputs, *d_final):
            dx, d_params = backward(*args, hs, saved, tf.transpose(d_outputs, [1, 0, 2]), *d_final)
            return (tf.transpose(dx, [1, 0, 2]), *d_params)

        return (tf.transpose(hs, [1, 0, 2]), *final), grad

    return run(*[tf.convert_to_tensor(v) for v in (x, *weights, *states)])


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0):
    """Keras's LSTM equations over ``x`` (batch, T, in) from ``h0, c0``: ``(outputs, h, c)``."""
    return _sequence(_lstm_forward, _lstm_backward, x, (kernel, recurrent_kernel, bias), (h0, c0))


def gru_sequence(x, kernel, recurrent_kernel, bias, h0):
    """Keras's GRU equations (``reset_after=True``, ``bias`` (2, 3 units)) over ``x`` from
    ``h0``: ``(outputs, h)``."""
    return _sequence(_gru_forward, _gru_backward, x, (kernel, recurrent_kernel, bias), (h0,))


class _Fused:
    """Takes the fused loop where it applies and Keras's own loop everywhere else."""

    def _fusable(self) -> bool:
        return True

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
class FusedLSTM(_Fused, keras.layers.LSTM):
    """``keras.layers.LSTM`` (same arguments, weights and results) with the fused CPU loop."""

    _sequence = staticmethod(lstm_sequence)


@keras.saving.register_keras_serializable(package="seqzoo")
class FusedGRU(_Fused, keras.layers.GRU):
    """``keras.layers.GRU`` (same arguments, weights and results) with the fused CPU loop
    (for ``reset_after=True``, Keras's default)."""

    _sequence = staticmethod(gru_sequence)

    def _fusable(self) -> bool:
        return self.reset_after
