"""Keras optimizers on dense gradients, and the one constructor with seqzoo's clipping options."""

from __future__ import annotations

import keras

from zoo.errors import ConfigError


def dense_gradients(grads: list) -> list:
    """``grads`` with every ``tf.IndexedSlices`` (an Embedding's gradient: one row per looked-up
    token) summed into its dense tensor.

    Keras 3's TensorFlow optimizers treat each row of a sparse gradient as if its index were
    unique: with a token repeated in the batch, Adam's and RMSprop's second moment grows by the
    sum of the rows' squares instead of the square of their sum, and ``clipnorm`` measures the
    unsummed rows. Summed first, the update is exactly the dense one (as in PyTorch, whose
    Embedding gradient is dense). Keras's Adam updates its dense moments over the whole table
    every step anyway; for a small vocabulary the dense gradient is also faster.
    """
    import tensorflow as tf

    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


class _DenseGradients:
    """An optimizer that applies :func:`dense_gradients` of what it is given.

    Without a ``tf.distribute`` strategy (one replica) the update runs in the cross-replica
    context (``merge_call``), where Keras skips its all-reduce of the gradients: a sum over one
    replica, but in a traced step TensorFlow's ``ReplicaContext.all_reduce`` is a graph-mode
    ``tf.custom_gradient``, which registers a gradient function under a new name in TensorFlow's
    process-wide gradient registry on every trace. That entry holds the traced train function's
    graph, its captured variables and compiled kernels for the rest of the process, so every
    model trained in one process (a tuner's trials, a study's runs) stayed in memory.
    """

    def apply(self, grads, trainable_variables=None):
        import tensorflow as tf

        grads = dense_gradients(list(grads))
        apply = super().apply
        if tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
            return apply(grads, trainable_variables)
        return tf.distribute.get_replica_context().merge_call(
            lambda _strategy, g, v: apply(g, v), args=(grads, trainable_variables)
        )


@keras.saving.register_keras_serializable(package="seqzoo")
class Adam(_DenseGradients, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` on dense gradients."""


@keras.saving.register_keras_serializable(package="seqzoo")
class SGD(_DenseGradients, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` on dense gradients."""


@keras.saving.register_keras_serializable(package="seqzoo")
class RMSprop(_DenseGradients, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` on dense gradients."""


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop}


def make_optimizer(
    learning_rate: float = 1e-3,
    *,
    clipnorm: float | None = None,
    global_clipnorm: float | None = None,
    clipvalue: float | None = None,
    optimizer: str = "adam",
) -> keras.optimizers.Optimizer:
    """A Keras optimizer with its clipping options (per-variable norm, global norm, value) that
    sums sparse gradients' repeated rows first (:func:`dense_gradients`)."""
    if learning_rate is None or learning_rate <= 0:
        raise ConfigError("learning_rate", learning_rate, "a positive float")
    if clipnorm is not None and global_clipnorm is not None:
        raise ConfigError(
            "global_clipnorm",
            global_clipnorm,
            "None when clipnorm is set",
            "Clip per variable (clipnorm) or jointly (global_clipnorm), not both",
        )
    for name, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)):
        if value is not None and value <= 0:
            raise ConfigError(name, value, "a positive float or None")
    if optimizer not in OPTIMIZERS:
        raise ConfigError("optimizer", optimizer, "one of " + ", ".join(OPTIMIZERS))
    return OPTIMIZERS[optimizer](
        learning_rate=learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
    )
