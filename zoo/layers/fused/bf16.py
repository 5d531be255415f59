"""The loops' per-step buffers, and bfloat16 ones as their uint16 bit patterns.

The loops are batch-major: per-step arrays are (B, T, .); step t reads column t of each
and writes column t of its outputs in place.

bfloat16 arrays enter and leave the loops as their uint16 bit patterns (:func:`bits`, no copy):
XLA's CPU backend converts a whole bfloat16 array to float32 before slicing it, and writes
into a bfloat16 buffer far more slowly than into a float32 one, while uint16 slices and
writes are native. :func:`read` and :func:`encode` convert one step exactly as ``tf.cast`` does.
:func:`encode` is XLA's own float32 -> bfloat16 conversion, bitcast: where the CPU has AVX512_BF16
that is one instruction per 16 values, faster than rounding the bit patterns with integer ops.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice


def bits(x):
    """A bfloat16 array as the uint16 array of its bit patterns (a float32 one as is)."""
    return tf.bitcast(x, tf.uint16) if x.dtype == tf.bfloat16 else x


def from_bits(x):
    """Inverse of :func:`bits`."""
    return tf.bitcast(x, tf.bfloat16) if x.dtype == tf.uint16 else x


def read(buffer, t):
    """``buffer[:, t]`` in float32; a uint16 buffer holds bfloat16 bit patterns."""
    value = buffer[:, t]
    if value.dtype == tf.uint16:  # bfloat16 is the upper half of a float32
        return tf.bitcast(tf.bitwise.left_shift(tf.cast(value, tf.uint32), 16), tf.float32)
    return tf.cast(value, tf.float32)


def encode(value, dtype):
    """float32 ``value`` for a ``dtype`` buffer: uint16 gets its bfloat16 bit pattern, rounded
    to nearest even (``tf.cast``'s conversion; NaN stays NaN)."""
    if dtype != tf.uint16:
        return value
    return tf.bitcast(tf.cast(value, tf.bfloat16), tf.uint16)


def buffers(batch, steps, *widths, dtype=tf.float32):
    """Zeroed (batch, steps, width) buffers, one per width."""
    return [tf.zeros([batch, steps, w], dtype) for w in widths]


def write(buffer, t, value, column=0):
    """``buffer[:, t, column:column + n] = value`` in place: (B, T, .) <- (B, n), encoded for the
    buffer's dtype."""
    return dynamic_update_slice(buffer, encode(value, buffer.dtype)[:, None], [0, t, column])


def rounded_dtype(kernel):
    """The dtype of the per-step arrays kept in the compute dtype: bfloat16 (as bits) when the
    loops' matmuls take bfloat16, else float32. These are the backward's projection gradients
    and, for the LSTM, everything its forward saves (see ``zoo.layers.fused.cells``)."""
    return tf.uint16 if kernel.dtype == tf.bfloat16 else tf.float32
