"""A whole sequence through one cell as a single differentiable op (``tf.custom_gradient``).

Keras runs a recurrent layer on CPU as a graph loop of small ops per time step and lets
TensorFlow differentiate that loop, which saves every intermediate and adds weight-gradient
matmuls to every step. Here the gradient is written by hand instead: the forward projects all
inputs in one matmul and runs the cell's compiled loop (``zoo.layers.fused.cells``); the
backward runs the cell's reverse loop for the per-step projection gradients, then forms the
input and weight gradients of all steps as a few large matmuls. The large matmuls run outside
XLA (oneDNN) in the compute dtype. XLA's CPU loop runs on one core, so the batch is split into
chunks whose pipelines run concurrently, one per core (:func:`_batch_split`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import tensorflow as tf

from zoo.layers.fused import bf16
from zoo.layers.fused.cells import GRU, LSTM, Cell

# Most concurrent loops one layer call runs (see _batch_split).
MAX_CHUNKS = 4


def _shifted(first, sequence):
    """``[first, sequence[:, 0], ..., sequence[:, -2]]`` along time: the previous step's state."""
    return tf.concat([first[:, None], sequence[:, :-1]], 1)


def _matmul(a, b, **kwargs):
    """(B, T, n) x (n, k) or, with ``transpose_a``, (B, T, n)^T x (B, T, k) as one 2-D matmul
    outside XLA (oneDNN, which runs bfloat16 matmuls faster than XLA's CPU dot)."""
    flat = lambda v: tf.reshape(v, [-1, v.shape[-1]])  # noqa: E731
    if kwargs.get("transpose_a"):
        return tf.matmul(flat(a), flat(b), **kwargs)
    product = tf.matmul(flat(a), b, **kwargs)
    return tf.reshape(product, tf.concat([tf.shape(a)[:-1], tf.shape(product)[-1:]], 0))  # -1 fails on empty chunks


def _usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    return min(cores, inter_op) if inter_op > 0 else cores


def _batch_split(batch, recurrent_kernel) -> list:
    """Row counts of the batch chunks that run as independent, concurrent loops.

    XLA's CPU loop runs on one core, so two half-batch loops (separate ops that TensorFlow's
    inter-op pool runs side by side) finish the recurrence sooner than one loop over the whole
    batch. That stops paying once the recurrent kernel outgrows the cache, so only kernels up to
    4 MiB in float32 are split, into at most one chunk per core (and ``MAX_CHUNKS``) and at least
    8 rows per chunk. Measured on 2 cores only.
    """
    chunks = min(_usable_cores(), MAX_CHUNKS)
    if recurrent_kernel.shape.num_elements() > 2**20:
        chunks = 1
    elif isinstance(batch, int):
        chunks = max(1, min(chunks, batch // 8))
    return _rows(batch, chunks)


def _rows(batch, chunks: int) -> list:
    """``batch`` rows (an int or a scalar tensor) as ``chunks`` nearly equal counts."""
    if chunks == 1:
        return [batch]
    return [(batch + i) // chunks for i in range(chunks)]


def _sequence(cell: Cell, x, kernel, recurrent_kernel, bias, states):
    """Run ``cell``'s fused loop over ``x`` (batch, T, in) from ``states``.

    Returns ``(outputs (batch, T, units), *final_states)`` in ``x``'s dtype, differentiable in
    ``x``, every weight and every state. The large matmuls (every step's input projection and,
    in the backward pass, the input and weight gradients of all steps at once) run in ``x``'s
    dtype, float32 or bfloat16; the recurrence runs in XLA-compiled loops, one per batch chunk
    (:func:`_batch_split`), with float32 states and recurrent matmuls on ``x``'s dtype.

    Inside a graph (a Keras train, test or predict function) the op is traced once per cell,
    input signature and batch split by a module-level ``tf.function`` and reused by every
    later graph: a graph-mode ``tf.custom_gradient`` registers its gradient function in
    TensorFlow's process-wide gradient registry, which keeps the graph it was traced in
    alive, so tracing it into each model's own functions kept every model trained in one
    process (a tuner's trials, a study's runs) in memory.
    """
    inputs = [tf.convert_to_tensor(v) for v in (x, kernel, recurrent_kernel, bias, *states)]
    batch = inputs[0].shape[0]
    sizes = _batch_split(batch if batch is not None else tf.shape(inputs[0])[0], inputs[2])
    plan = tuple(sizes) if all(isinstance(n, int) for n in sizes) else len(sizes)
    if tf.executing_eagerly():  # an eager custom gradient registers nothing
        return _differentiable(cell, plan, *inputs)
    outputs = _traced(cell)(plan, *inputs)
    # A trace for a more general shape may have served this call; put back the static shapes.
    shapes = [x.shape[:-1] + recurrent_kernel.shape[:1], *(s.shape for s in states)]
    for output, shape in zip(outputs, shapes, strict=True):
        output.set_shape(shape)
    return outputs


_TRACED: dict[Cell, Callable] = {}


def _traced(cell: Cell) -> Callable:
    """``_differentiable`` for ``cell`` as one ``tf.function`` for the process (see :func:`_sequence`)."""
    if cell not in _TRACED:
        _TRACED[cell] = tf.function(functools.partial(_differentiable, cell), autograph=False)
    return _TRACED[cell]


def _differentiable(cell: Cell, plan, *tensors):
    """The fused op with its hand-written gradient; ``plan``: the batch chunks' row counts, or their
    number when the batch size is known only at run time."""

    @tf.custom_gradient
    def run(*inputs):
        # The compiled functions are opaque to autodiff: stop_gradient keeps an outer
        # tape from trying to differentiate them; ``grad`` below is their gradient.
        x, kernel, recurrent_kernel, bias, *states = [tf.stop_gradient(v) for v in inputs]
        bias_f32, *states_f32 = [tf.cast(v, tf.float32) for v in (bias, *states)]
        recurrent = tf.cast(recurrent_kernel, x.dtype)  # the loops' matmul operands; they accumulate in float32
        sizes = list(plan) if isinstance(plan, tuple) else _rows(tf.shape(x)[0], plan)
        split = (lambda v: [v]) if len(sizes) == 1 else (lambda v: tf.split(v, tf.stack(sizes), axis=0))
        concat = (lambda vs: vs[0]) if len(sizes) == 1 else (lambda vs: tf.concat(vs, 0))
        # Each chunk is one independent pipeline (input projection, loop, and in ``grad`` its
        # backward loop and gradient matmuls), so chunks overlap and no (B, T, gates) array
        # is ever split or concatenated.
        chunks = []  # (x_i, states_i, hs_i (as the loop keeps it), outputs_i (x's dtype), saved_i, final_i)
        for x_i, *states_i in zip(split(x), *(split(s) for s in states_f32), strict=True):
            xw = _matmul(x_i, kernel)  # (b, T, gates); the loop adds the bias
            hs_i, saved_i, final_i = cell.forward(bf16.bits(xw), bias_f32, recurrent, *states_i)
            chunks.append((x_i, states_i, hs_i, tf.cast(bf16.from_bits(hs_i), x.dtype), saved_i, final_i))
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
            d_chunks = zip(split(bf16.bits(d_outputs)), *(split(tf.cast(d, tf.float32)) for d in d_final), strict=True)
            dxs, weight_grads, d_states = [], [], []
            recurrent_t = tf.transpose(recurrent)  # here, not in XLA: its bf16 dot on a transposed operand is slow
            for (x_i, states_i, hs_i, outputs_i, saved, _), (d_hs, *d_final_i) in zip(chunks, d_chunks, strict=True):
                d_projections, d_bias, d_states_i = cell.backward(
                    recurrent_t, hs_i, states_i[0], saved, d_hs, *d_final_i
                )
                d_projections = [tf.cast(bf16.from_bits(d), x.dtype) for d in d_projections]
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

    return run(*tensors)


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0):
    """Keras's LSTM equations over ``x`` (batch, T, in) from ``h0, c0``: ``(outputs, h, c)``."""
    return _sequence(LSTM, x, kernel, recurrent_kernel, bias, (h0, c0))


def gru_sequence(x, kernel, recurrent_kernel, bias, h0):
    """Keras's GRU equations (``reset_after=True``, ``bias`` (2, 3 units)) over ``x`` from
    ``h0``: ``(outputs, h)``."""
    return _sequence(GRU, x, kernel, recurrent_kernel, bias, (h0,))
