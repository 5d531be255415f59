"""The one compile + fit path that the CLI, the tuner, the studies and the tests use."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras


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
    """An optimizer that applies :func:`dense_gradients` of what it is given."""

    def apply(self, grads, trainable_variables=None):
        return super().apply(dense_gradients(list(grads)), trainable_variables)


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
        raise ValueError(f"Received learning_rate={learning_rate!r}, expected a positive float")
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError("Pass clipnorm (per variable) or global_clipnorm, not both")
    for name, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)):
        if value is not None and value <= 0:
            raise ValueError(f"Received {name}={value!r}, expected a positive float or None")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[optimizer](
        learning_rate=learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
    )


def compile_model(
    model: keras.Model,
    *,
    loss: Any,
    metrics: Iterable[Any] = (),
    learning_rate: float = 1e-3,
    clipnorm: float | None = None,
    global_clipnorm: float | None = None,
    clipvalue: float | None = None,
    optimizer: str = "adam",
    jit_compile: bool | str = "auto",
) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(
            learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue, optimizer=optimizer
        ),
        loss=loss,
        metrics=list(metrics),
        jit_compile=jit_compile,
    )
    return model


def fit(
    model: keras.Model,
    train,
    validation=None,
    *,
    epochs: int = 1,
    run_dir: str | os.PathLike | None = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    steps_per_epoch: int | None = None,
    class_weight: dict | None = None,
    bptt: int | str | None = None,
    stream: bool = False,
    monitor: bool = True,
    resume: bool = True,
    checkpoint: bool = True,
) -> keras.callbacks.History:
    """``model.fit`` with the training mechanics and the run's logs.

    Args:
        bptt: truncated BPTT chunk length ``K`` (int), ``None``/``"full"`` for
            ordinary BPTT, or a curriculum ``"1:2,5:2,20:3,full"`` (``K:epochs``
            stages; see :mod:`zoo.bptt` for the semantics and which loss applies).
        stream: consecutive batches continue the same streams (streaming text):
            carry the recurrent state across batches, reset each epoch.
        monitor: log the gradient norms of every step (global before/after
            clipping, per layer, per LSTM/GRU gate) into the History
            (``history.steps`` per step, epoch means in ``history.history``),
            ``grad_norms.csv``, TensorBoard and ``grad_norms.png``.
        resume: if ``run_dir`` holds the checkpoint of an unfinished run,
            continue it (weights, optimizer, epoch); the result equals an
            uninterrupted run.
        checkpoint: write ``run_dir/checkpoint/state.npz`` after every epoch.

    Writes ``history.csv`` and ``tensorboard/{train,validation}`` (epoch
    scalars ``epoch_<metric>``, step scalars ``step/<name>``) under ``run_dir``. A NaN/Inf
    loss stops the run and raises :class:`zoo.monitor.TrainingDiverged` (a
    ``ValueError``); the last good checkpoint stays.
    """
    import tensorflow as tf

    from zoo import bptt as B
    from zoo import checkpoint as C
    from zoo import monitor as M

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"Received epochs={epochs!r}, expected a positive integer")
    if model.optimizer is None:
        raise ValueError("The model is not compiled; call zoo.training.compile_model(model, loss=...) before fit")
    schedule = B.parse_bptt(bptt)
    if (schedule.truncates or stream) and _distributed(model):
        raise ValueError(
            "Truncated BPTT and streaming update the weights inside a loop over chunks, which tf.distribute "
            "cannot synchronize across replicas. Use --bptt full (and not --mode stream), or train without --strategy."
        )
    carrier = B.StateCarrier(model) if (schedule.truncates or stream) else None
    stats = M.GradientStats(model) if monitor else None
    run_dir = Path(run_dir) if run_dir is not None else None

    initial_epoch = initial_step = 0
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume and C.resumable(run_dir):
            initial_epoch = C.load(model, run_dir)
            for name in ("grad_norms.csv", "history.csv"):
                M.truncate_csv(run_dir / name, initial_epoch)
            initial_step = M.last_step(run_dir / "grad_norms.csv")
            if verbose:
                print(f"Resuming {run_dir} after epoch {initial_epoch} of {epochs}")
        C.set_status(run_dir, status="running", epochs=epochs, bptt=str(schedule), stream=stream)
        if checkpoint:
            train, steps_per_epoch = _replayable(train, steps_per_epoch, initial_epoch)

    guard = M.GradientMonitor(stats.names if stats else None, run_dir, initial_step=initial_step)
    cbs: list[keras.callbacks.Callback] = []
    custom = monitor or carrier is not None
    if custom:
        if not model.optimizer.built:  # slot variables where the model's variables live (tf.distribute too)
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)

        def build_step(k):
            return B.make_train_step(model, k, carrier=carrier, stream=stream, stats_fn=stats)

        schedule_cb = B.BpttCallback(schedule, build_step, carrier, stream)
        schedule_cb.current = schedule.k_for(initial_epoch)
        object.__setattr__(model, "train_step", build_step(schedule_cb.current))
        cbs.append(schedule_cb)
    cbs.append(guard)
    cbs.extend(callbacks)
    if run_dir is not None:
        if checkpoint:
            cbs.append(C.EpochCheckpoint(run_dir, guard))
        cbs.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True))

    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _prepare_multi_worker(model, train)
    saved_jit = model.jit_compile
    if carrier is not None:
        carrier.install()
        object.__setattr__(model, "test_step", B.make_test_step(model, carrier, stream))
        model.jit_compile = False  # dynamic-shape state variables and a chunk loop: not for XLA
    _reset_functions(model)
    try:
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=cbs,
            verbose=verbose,
            steps_per_epoch=steps_per_epoch,
            class_weight=class_weight,
        )
    finally:
        if carrier is not None:
            carrier.uninstall()
            model.jit_compile = saved_jit
        for name in ("train_step", "test_step", "_maybe_symbolic_build"):
            model.__dict__.pop(name, None)
        _reset_functions(model)
    history.steps = guard.steps
    if guard.diverged:
        kept = ""
        if run_dir is not None:
            done = C.status(run_dir).get("epochs_done")
            C.set_status(run_dir, status="diverged", message=guard.diverged)
            if checkpoint and done:
                kept = f" The last good checkpoint (after epoch {done}) is kept in {run_dir / C.STATE}."
        raise M.TrainingDiverged(guard.diverged + kept)
    if run_dir is not None:
        C.set_status(run_dir, status="finished")
    return history


def _distributed(model: keras.Model) -> bool:
    """True when the model's variables were created in a ``tf.distribute`` strategy's scope."""
    import tensorflow as tf

    return model.distribute_strategy is not tf.distribute.get_strategy()


def _prepare_multi_worker(model: keras.Model, train) -> None:
    """Work around keras-team/keras#20585 (Keras's ``fit`` fails under MultiWorkerMirroredStrategy):

    * Keras builds the model at the start of ``fit`` by averaging a distributed batch with
      ``strategy.reduce``, which fails across workers: build it here from one local batch instead;
    * Keras averages the step's logs across workers along axis 0, which a scalar lacks: give every
      log a leading axis of 1.
    """
    import tensorflow as tf

    if isinstance(train, tf.data.Dataset):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=next(iter(train)))
        object.__setattr__(model, "_maybe_symbolic_build", lambda *args, **kwargs: None)

    def leading_axis(step):
        return lambda data: {k: tf.expand_dims(v, 0) for k, v in step(data).items()}

    for name in ("train_step", "test_step"):
        object.__setattr__(model, name, leading_axis(getattr(model, name)))


def _reset_functions(model: keras.Model) -> None:
    """Forget traced train/test/predict functions so the next call retraces."""
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)


def _replayable(train, steps_per_epoch: int | None, epochs_done: int):
    """One endless iterator over a tf.data pipeline, advanced past the epochs a
    resumed run already saw, so a reshuffling dataset yields the same batches as
    in an uninterrupted run (a new Keras iterator per epoch would restart the
    shuffle order in a new process)."""
    import tensorflow as tf

    if not isinstance(train, tf.data.Dataset):
        return train, steps_per_epoch
    n = int(train.cardinality())
    if steps_per_epoch is None:
        if n <= 0:  # unknown or infinite length: Keras's own epochs; a resume restarts the shuffle order
            return train, steps_per_epoch
        steps_per_epoch = n
    if n != int(tf.data.INFINITE_CARDINALITY):
        train = train.repeat()
    return train.skip(epochs_done * steps_per_epoch), steps_per_epoch
