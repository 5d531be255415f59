"""Recurrent state carried from one call of a layer into the next, for truncated BPTT and streams.

Truncated BPTT cuts a batch into chunks; chunk ``n + 1`` must start from the state
chunk ``n`` ended in, with no gradient through it. Keras's ``stateful=True`` does that
but fixes the batch size at build time and stores the state as the layer's own weights.
Here the state lives in a :class:`StateSlot`, a plain holder of ``tf.Variable`` s with
a dynamic batch size that the trainer attaches for the duration of ``fit``. Reading a
variable is where the gradient stops.

:class:`CarriedState` does this through ``inner_loop``, the hook Keras's ``RNN.call``
runs the recurrence through: while a slot is attached the loop starts from the slot's
state (not from zeros) and stores its final state back into it.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import tree


class StateSlot:
    """The carried state of one recurrent layer: one variable of shape (batch, width) per
    state tensor, batch size dynamic. Not a Keras weight: never saved, never trained."""

    def __init__(self, widths, dtype, name: str):
        self.variables = [
            tf.Variable(tf.zeros((0, d), dtype), shape=tf.TensorShape([None, d]), trainable=False, name=f"{name}_carry")
            for d in widths
        ]

    def read(self) -> list:
        return [v.read_value() for v in self.variables]

    def write(self, states) -> None:
        for variable, state in zip(self.variables, tree.flatten(states), strict=True):
            variable.assign(tf.cast(state, variable.dtype))

    def forget(self) -> None:
        """Drop the state (eagerly); the next batch starts from zeros."""
        for v in self.variables:
            v.assign(tf.zeros((0, v.shape[-1]), v.dtype))


class CarriedState:
    """Mixin for a Keras RNN layer: while :meth:`attach_state` holds a slot, each call starts from
    the slot's state and stores its final state there."""

    state_slot: StateSlot | None = None

    def attach_state(self, slot: StateSlot | None) -> None:
        """Carry state through ``slot`` from now on (``None``: start every call from zeros again)."""
        self.state_slot = slot

    def new_state_slot(self) -> StateSlot:
        return StateSlot(tree.flatten(self.cell.state_size), self.compute_dtype, self.name)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        slot = self.state_slot
        if slot is None:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        carried = [tf.cast(s, t.dtype) for s, t in zip(slot.read(), tree.flatten(initial_state), strict=True)]
        last, outputs, states = super().inner_loop(sequences, carried, mask, training=training)
        slot.write(states)
        return last, outputs, states


@keras.saving.register_keras_serializable(package="seqzoo")
class CarriedSimpleRNN(CarriedState, keras.layers.SimpleRNN):
    """``keras.layers.SimpleRNN`` (same arguments, weights and results) that can carry its state
    across calls (:class:`CarriedState`)."""
