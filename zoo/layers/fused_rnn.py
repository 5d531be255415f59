"""``keras.layers.LSTM`` and ``keras.layers.GRU`` with a fused, XLA-compiled recurrence on CPU.

Keras runs a recurrent layer on CPU as a graph loop of small ops per time step and
lets TensorFlow differentiate that loop, which saves every intermediate and adds
weight-gradient matmuls to every step. :class:`FusedLSTM` and :class:`FusedGRU` keep
Keras's layers, weights and equations (LSTM gates i, f, c, o; GRU gates z, r, h with
``reset_after``) and replace only that loop with:

- a forward pass that projects all inputs in one matmul, then runs the recurrence
  (``h U`` plus the elementwise cell) in an XLA-compiled loop, keeping what the
  backward pass needs of every step;
- a hand-written backward pass (``tf.custom_gradient``): an XLA-compiled reverse
  loop that carries only the state gradients through ``dz U^T``, then the input and
  weight gradients of all steps as a few large matmuls.

The large matmuls run outside XLA (oneDNN) in the layer's compute dtype, and the loops'
per-step recurrent matmuls take their operands in it too (accumulating in float32); states,
gates and the elementwise cell are always float32 (what the LSTM loop saves for its backward
pass is stored in the compute dtype). Under ``mixed_bfloat16`` that makes the
large matmuls twice as fast and the recurrent ones about 1.5x, as PyTorch's bf16 autocast
does, while the states stay in float32 (Keras's own loop rounds them to bfloat16 every
step). Everything is batch-major, as Keras's layers are: no sequence is transposed. XLA's
CPU loop runs on one core, so the batch is split into chunks whose loops run concurrently,
one per core (:func:`_batch_split`).

In float32 outputs and gradients match Keras's layers to round-off; in bfloat16 they
are no further from float32 than Keras's bfloat16 loop (both tested). Speed is in
``benchmarks/RESULTS.md`` (``python -m benchmarks.train_speed``). Where the fused loop
does not apply, the layers are exactly Keras's: on a GPU (Keras's cuDNN path), with a
mask, with dropout while training, in float16, or with other activations.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import activations
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from zoo.layers.carry import CarriedState

# Most concurrent loops one layer call runs (see _batch_split).
MAX_CHUNKS = 4

# The loops are batch-major: per-step arrays are (B, T, .); step t reads column t of each
# and writes column t of its outputs in place.
#
# bfloat16 arrays enter and leave the loops as their uint16 bit patterns (``_bits``, no copy):
# XLA's CPU backend converts a whole bfloat16 array to float32 before slicing it, and writes
# into a bfloat16 buffer about 16x slower than into a float32 one, while uint16 slices and
# writes are native. ``_read`` and ``_encode`` convert one step exactly as ``tf.cast`` does.
# ``_encode`` is XLA's own float32 -> bfloat16 conversion, bitcast: where the CPU has AVX512_BF16
# that is one instruction per 16 values, and it made the bf16 LSTM train step 4.9 ms (of 44)
# faster than rounding the bit patterns with integer ops (in-process A/B, 15 of 15 pairs).


def _bits(x):
    """A bfloat16 array as the uint16 array of its bit patterns (a float32 one as is)."""
    return tf.bitcast(x, tf.uint16) if x.dtype == tf.bfloat16 else x


def _from_bits(x):
    """Inverse of :func:`_bits`."""
    return tf.bitcast(x, tf.bfloat16) if x.dtype == tf.uint16 else x


def _read(buffer, t):
    """``buffer[:, t]`` in float32; a uint16 buffer holds bfloat16 bit patterns."""
    value = buffer[:, t]
    if value.dtype == tf.uint16:  # bfloat16 is the upper half of a float32
        return tf.bitcast(tf.bitwise.left_shift(tf.cast(value, tf.uint32), 16), tf.float32)
    return tf.cast(value, tf.float32)


def _encode(value, dtype):
    """float32 ``value`` for a ``dtype`` buffer: uint16 gets its bfloat16 bit pattern, rounded
    to nearest even (``tf.cast``'s conversion; NaN stays NaN)."""
    if dtype != tf.uint16:
        return value
    return tf.bitcast(tf.cast(value, tf.bfloat16), tf.uint16)


def _buffers(batch, steps, *widths, dtype=tf.float32):
    return [tf.zeros([batch, steps, w], dtype) for w in widths]


def _write(buffer, t, value, column=0):
    """``buffer[:, t, column:column + n] = value`` in place: (B, T, .) <- (B, n), encoded for the
    buffer's dtype."""
    return dynamic_update_slice(buffer, _encode(value, buffer.dtype)[:, None], [0, t, column])


def _rounded_dtype(kernel):
    """The dtype of the per-step arrays kept in the compute dtype: bfloat16 (as bits) when the
    loops' matmuls take bfloat16, else float32. These are the backward's projection gradients
    and, for the LSTM, everything its forward saves (see :func:`_lstm_forward`)."""
    return tf.uint16 if kernel.dtype == tf.bfloat16 else tf.float32


def _shifted(first, sequence):
    """``[first, sequence[:, 0], ..., sequence[:, -2]]`` along time: the previous step's state."""
    return tf.concat([first[:, None], sequence[:, :-1]], 1)


def _recurrent_matmul(a, kernel):
    """``a @ kernel`` in float32 from operands in ``kernel``'s dtype (bfloat16: float32 accumulation)."""
    return tf.linalg.matmul(tf.cast(a, kernel.dtype), kernel, output_type=tf.float32)


def _gate_scale(units):
    """Per-column scale and shift that make one ``tanh`` over the LSTM pre-activation
    (i|f|g|o) compute every gate: sigmoid(z) = 0.5 tanh(z / 2) + 0.5 on i, f, o and tanh(z)
    on g. XLA's CPU ``tanh`` is vectorized; its ``logistic`` is a slower ``exp``."""
    half, one = tf.fill([units], 0.5), tf.ones([units])
    return tf.concat([half, half, one, half], 0), tf.concat([half, half, 0 * one, half], 0)


@tf.function(jit_compile=True)
def _lstm_forward(xw, bias, recurrent_kernel, h0, c0):
    """``xw`` (B, T, 4 units): every step's input projection (compute dtype, see :func:`_bits`).
    -> hs, (w, dh->dc factors, forget gates), final (h, c).

    Besides the outputs the loop keeps only what the backward pass multiplies by, so the
    backward loop has no transcendental and no gather: per step it forms
    ``dz = [dc, dc, dc, dh] * w`` with ``w = [g i'(z), c_prev f'(z), i g'(z), tanh(c) o'(z)]``.
    Under bfloat16 every saved array is kept in bfloat16, states and arithmetic staying float32:
    the outputs ``hs`` (the layer returns them in bfloat16 anyway), ``w`` (``dz`` is rounded to
    bfloat16 for its matmuls anyway), and the factors ``o tanh'(c)`` and forget gates ``f`` that
    carry ``dh`` into ``dc`` and ``dc`` back in time. That halves what the loops write and read;
    the gradients' relative error against float32 went from about 0.5% to 0.6% (tested against
    Keras's own bfloat16 loop, which is further off).
    """
    (batch, steps, _), units = tf.unstack(tf.shape(xw)), h0.shape[-1]
    scale, shift = _gate_scale(units)

    def step(t, h, c, hs, ws, ys, fs):
        z = _read(xw, t) + bias + _recurrent_matmul(h, recurrent_kernel)
        a = tf.tanh(z * scale) * scale + shift  # i|f|g|o
        i, f, g, o = tf.split(a, 4, axis=1)
        c_prev, c = c, f * c + i * g
        tanh_c = tf.tanh(c)
        h = o * tanh_c
        # w in four column blocks: XLA's CPU loop writes them faster than one concatenation
        # (in-process A/B of the bf16 train step: 0.9 ms of 40 faster, in 13 of 15 pairs).
        w = (g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g) * (1 + g), tanh_c * o * (1 - o))
        for k, w_k in enumerate(w):
            ws = _write(ws, t, w_k, column=k * units)
        return (
            t + 1,
            h,
            c,
            _write(hs, t, h),
            ws,
            _write(ys, t, o * (1 - tanh_c * tanh_c)),
            _write(fs, t, f),
        )

    buffers = _buffers(batch, steps, units, 4 * units, units, units, dtype=_rounded_dtype(recurrent_kernel))  # hs, ws, ys, fs
    _, h, c, hs, *saved = tf.while_loop(lambda t, *_: t < steps, step, (0, h0, c0, *buffers))
    return hs, saved, (h, c)


@tf.function(jit_compile=True)
def _lstm_backward(recurrent_t, hs, h0, saved, d_hs, dh, dc):
    """-> (dz,): the gradient of every step's pre-activation, which is both the input
    projection's and the recurrent projection's; d_bias; (dh0, dc0). (``hs, h0`` are GRU's.)"""
    ws, ys, fs = saved
    batch, steps, gates = tf.unstack(tf.shape(ws))

    def step(t, dh, dc, d_bias, dzs):
        dh = dh + _read(d_hs, t)
        dc = dc + dh * _read(ys, t)
        dz = tf.concat([dc, dc, dc, dh], 1) * _read(ws, t)
        return t - 1, _recurrent_matmul(dz, recurrent_t), dc * _read(fs, t), d_bias + tf.reduce_sum(dz, 0), _write(dzs, t, dz)

    buffers = _buffers(batch, steps, ws.shape[-1], dtype=_rounded_dtype(recurrent_t))
    _, dh0, dc0, d_bias, dz = tf.while_loop(lambda t, *_: t >= 0, step, (steps - 1, dh, dc, tf.zeros([gates]), *buffers))
    return (dz,), d_bias, (dh0, dc0)


@tf.function(jit_compile=True)
def _gru_forward(xw, bias, recurrent_kernel, h0):
    """``xw`` (B, T, 3 units): every step's input projection (compute dtype, see :func:`_bits`); ``bias``
    (2, 3 units): input and recurrent bias (Keras's ``reset_after=True``).
    -> hs, (gates z|r|hh, recurrent h-projection), final (h,)."""
    (batch, steps, _), units = tf.unstack(tf.shape(xw)), h0.shape[-1]

    def step(t, h, hs, gates, rec_hs):
        x_z, x_r, x_h = tf.split(_read(xw, t) + bias[0], 3, axis=1)
        rec_z, rec_r, rec_h = tf.split(_recurrent_matmul(h, recurrent_kernel) + bias[1], 3, axis=1)
        z, r = tf.sigmoid(x_z + rec_z), tf.sigmoid(x_r + rec_r)
        hh = tf.tanh(x_h + r * rec_h)
        h = z * h + (1 - z) * hh
        return t + 1, h, _write(hs, t, h), _write(gates, t, tf.concat([z, r, hh], 1)), _write(rec_hs, t, rec_h)

    buffers = _buffers(batch, steps, units, 3 * units, units)
    _, h, hs, *saved = tf.while_loop(lambda t, *_: t < steps, step, (0, h0, *buffers))
    return hs, saved, (h,)


@tf.function(jit_compile=True)
def _gru_backward(recurrent_t, hs, h0, saved, d_hs, dh):
    """-> (gradient of the input projection, of the recurrent projection ``h U + b``),
    d_bias (2, 3 units), (dh0,). Step t's previous state is ``hs[:, t - 1]``, or ``h0``."""
    gates, rec_hs = saved
    batch, steps, width = tf.unstack(tf.shape(gates))

    def step(t, dh, d_bias, d_inputs, d_recurrents):
        z, r, hh = tf.split(gates[:, t], 3, axis=1)
        dh = dh + _read(d_hs, t)
        h_prev = tf.where(t > 0, hs[:, tf.maximum(t - 1, 0)], h0)
        dz = dh * (h_prev - hh) * z * (1 - z)
        dhh = dh * (1 - z) * (1 - hh * hh)
        dr = dhh * rec_hs[:, t] * r * (1 - r)
        d_input, d_recurrent = tf.concat([dz, dr, dhh], 1), tf.concat([dz, dr, dhh * r], 1)
        dh = dh * z + _recurrent_matmul(d_recurrent, recurrent_t)
        d_bias = d_bias + tf.reduce_sum(tf.stack([d_input, d_recurrent]), 1)
        return t - 1, dh, d_bias, _write(d_inputs, t, d_input), _write(d_recurrents, t, d_recurrent)

    buffers = _buffers(batch, steps, gates.shape[-1], gates.shape[-1], dtype=_rounded_dtype(recurrent_t))
    _, dh0, d_bias, d_in, d_rec = tf.while_loop(lambda t, *_: t >= 0, step, (steps - 1, dh, tf.zeros([2, width]), *buffers))
    return (d_in, d_rec), d_bias, (dh0,)


def _matmul(a, b, **kwargs):
    """(B, T, n) x (n, k) or, with ``transpose_a``, (B, T, n)^T x (B, T, k) as one 2-D matmul
    outside XLA (oneDNN: as fast as XLA's in float32, twice as fast in bfloat16)."""
    flat = lambda v: tf.reshape(v, [-1, v.shape[-1]])  # noqa: E731
    if kwargs.get("transpose_a"):
        return tf.matmul(flat(a), flat(b), **kwargs)
    product = tf.matmul(flat(a), b, **kwargs)
    return tf.reshape(product, tf.concat([tf.shape(a)[:-1], tf.shape(product)[-1:]], 0))  # -1 fails on empty chunks


@dataclass(frozen=True)
class _Cell:
    forward: Callable  # (xw, bias, recurrent_kernel, *states) -> hs, saved, final states
    # (recurrent_t, hs, h0, saved, d_hs, *d_states) -> (d_input, d_recurrent) or, where they
    # are the same (LSTM), (d_input,); d_bias; d_states
    backward: Callable


_LSTM = _Cell(_lstm_forward, _lstm_backward)
_GRU = _Cell(_gru_forward, _gru_backward)


def _usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    return min(cores, inter_op) if inter_op > 0 else cores


def _batch_split(batch, recurrent_kernel) -> list:
    """Row counts of the batch chunks that run as independent, concurrent loops.

    XLA's CPU loop runs on one core, so on 2 cores two half-batch loops (separate ops that
    TensorFlow's inter-op pool runs side by side) do the recurrence of 64 x LSTM 256 in
    0.65x the time of one loop. It stops paying once the recurrent kernel outgrows the cache
    (units 1024: 1.15x slower), so only kernels up to 4 MiB in float32 are split, into at most
    one chunk per core (and ``MAX_CHUNKS``) and at least 8 rows per chunk. Measured on 2 cores only.
    """
    chunks = min(_usable_cores(), MAX_CHUNKS)
    if recurrent_kernel.shape.num_elements() > 2**20:
        chunks = 1
    elif isinstance(batch, int):
        chunks = max(1, min(chunks, batch // 8))
    if chunks == 1:
        return [batch]
    return [(batch + i) // chunks for i in range(chunks)]


def _sequence(cell: _Cell, x, kernel, recurrent_kernel, bias, states):
    """Run ``cell``'s fused loop over ``x`` (batch, T, in) from ``states``.

    Returns ``(outputs (batch, T, units), *final_states)`` in ``x``'s dtype, differentiable in
    ``x``, every weight and every state. The large matmuls (every step's input projection and,
    in the backward pass, the input and weight gradients of all steps at once) run in ``x``'s
    dtype, float32 or bfloat16; the recurrence runs in XLA-compiled loops, one per batch chunk
    (:func:`_batch_split`), with float32 states and recurrent matmuls on ``x``'s dtype.
    """

    @tf.custom_gradient
    def run(*inputs):
        # The compiled functions are opaque to autodiff: stop_gradient keeps an outer
        # tape from trying to differentiate them; ``grad`` below is their gradient.
        x, kernel, recurrent_kernel, bias, *states = [tf.stop_gradient(v) for v in inputs]
        bias_f32, *states_f32 = [tf.cast(v, tf.float32) for v in (bias, *states)]
        recurrent = tf.cast(recurrent_kernel, x.dtype)  # the loops' matmul operands; they accumulate in float32
        sizes = _batch_split(x.shape[0] if x.shape[0] is not None else tf.shape(x)[0], recurrent_kernel)
        split = (lambda v: [v]) if len(sizes) == 1 else (lambda v: tf.split(v, tf.stack(sizes), axis=0))
        concat = (lambda vs: vs[0]) if len(sizes) == 1 else (lambda vs: tf.concat(vs, 0))
        # Each chunk is one independent pipeline (input projection, loop, and in ``grad`` its
        # backward loop and gradient matmuls), so chunks overlap and no (B, T, gates) array
        # is ever split or concatenated.
        chunks = []  # (x_i, states_i, hs_i (as the loop keeps it), outputs_i (x's dtype), saved_i, final_i)
        for x_i, *states_i in zip(split(x), *(split(s) for s in states_f32), strict=True):
            xw = _matmul(x_i, kernel)  # (b, T, gates); the loop adds the bias
            hs_i, saved_i, final_i = cell.forward(_bits(xw), bias_f32, recurrent, *states_i)
            chunks.append((x_i, states_i, hs_i, tf.cast(_from_bits(hs_i), x.dtype), saved_i, final_i))
        hs = concat([outputs_i for *_, outputs_i, _, _ in chunks])
        final = [concat(list(s)) for s in zip(*(final_i for *_, final_i in chunks), strict=True)]
        # A trace for a more general shape (batch None, from a Keras graph) may have served
        # this call; put back the static shapes (a jit-compiled caller's loop needs them).
        hs.set_shape(x.shape[:-1] + recurrent_kernel.shape[:1])
        for state, initial in zip(final, states, strict=True):
            state.set_shape(initial.shape)

        def grad(d_outputs, *d_final):
            # The outputs' gradient enters the backward loops as it comes (bfloat16 as bits, read
            # per step); the final states' gradients are their initial float32 state gradients.
            d_chunks = zip(split(_bits(d_outputs)), *(split(tf.cast(d, tf.float32)) for d in d_final), strict=True)
            dxs, weight_grads, d_states = [], [], []
            recurrent_t = tf.transpose(recurrent)  # here, not in XLA: its bf16 dot on a transposed operand is slow
            for (x_i, states_i, hs_i, outputs_i, saved, _), (d_hs, *d_final_i) in zip(chunks, d_chunks, strict=True):
                d_projections, d_bias, d_states_i = cell.backward(recurrent_t, hs_i, states_i[0], saved, d_hs, *d_final_i)
                d_projections = [tf.cast(_from_bits(d), x.dtype) for d in d_projections]
                h_prev = _shifted(tf.cast(states_i[0], x.dtype), outputs_i)
                if len(d_projections) == 1:  # LSTM: both weight gradients from one matmul [x, h_prev]^T dz
                    (d_input,) = d_projections
                    both = _matmul(tf.concat([x_i, h_prev], -1), d_input, transpose_a=True)
                    d_k, d_rk = both[: kernel.shape[0]], both[kernel.shape[0] :]
                else:
                    d_input, d_recurrent = d_projections
                    d_k, d_rk = _matmul(x_i, d_input, transpose_a=True), _matmul(h_prev, d_recurrent, transpose_a=True)
                dxs.append(_matmul(d_input, kernel, transpose_b=True))
                weight_grads.append((d_k, d_rk, d_bias))  # this chunk's d_kernel, d_recurrent_kernel, d_bias
                d_states.append(d_states_i)
            grads = (
                concat(dxs),  # dx
                *(tf.add_n([tf.cast(g, tf.float32) for g in gs]) for gs in zip(*weight_grads, strict=True)),  # summed
                *(concat(list(d)) for d in zip(*d_states, strict=True)),
            )
            return [tf.cast(g, v.dtype) for g, v in zip(grads, inputs, strict=True)]

        return (hs, *(tf.cast(s, x.dtype) for s in final)), grad

    return run(*[tf.convert_to_tensor(v) for v in (x, kernel, recurrent_kernel, bias, *states)])


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0):
    """Keras's LSTM equations over ``x`` (batch, T, in) from ``h0, c0``: ``(outputs, h, c)``."""
    return _sequence(_LSTM, x, kernel, recurrent_kernel, bias, (h0, c0))


def gru_sequence(x, kernel, recurrent_kernel, bias, h0):
    """Keras's GRU equations (``reset_after=True``, ``bias`` (2, 3 units)) over ``x`` from
    ``h0``: ``(outputs, h)``."""
    return _sequence(_GRU, x, kernel, recurrent_kernel, bias, (h0,))


class _Fused:
    """Takes the fused loop where it applies and Keras's own loop everywhere else."""

    def _fusable(self) -> bool:
        return True

    def fused(self, mask=None, training=False) -> bool:
        """Whether a call with this mask and training flag takes the fused loop."""
        return (
            keras.backend.backend() == "tensorflow"
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
    """``keras.layers.LSTM`` (same arguments, weights and results) with the fused CPU loop."""

    _sequence = staticmethod(lstm_sequence)


@keras.saving.register_keras_serializable(package="seqzoo")
class FusedGRU(CarriedState, _Fused, keras.layers.GRU):
    """``keras.layers.GRU`` (same arguments, weights and results) with the fused CPU loop
    (for ``reset_after=True``, Keras's default)."""

    _sequence = staticmethod(gru_sequence)

    def _fusable(self) -> bool:
        return self.reset_after
