"""The one compile + fit path that the CLI, the tuner, the studies and the tests use.

The mechanics live one module each, imported in this order (none imports a later one):
:mod:`zoo.optimizers` (dense gradients, clipping), :mod:`zoo.bptt` (schedules, carried
state, the chunk loop), :mod:`zoo.train_step` (the ``keras.Model`` subclass whose
``train_step`` runs them), :mod:`zoo.monitor` (gradient norms, NaN stop),
:mod:`zoo.checkpoint` (epoch checkpoints, resume), and this module on top.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from zoo import bptt as B
from zoo import checkpoint as C
from zoo import monitor as M
from zoo.errors import ConfigError
from zoo.optimizers import make_optimizer
from zoo.train_step import SeqModel, TrainingPlan


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

    Under ``MultiWorkerMirroredStrategy`` build the layers in the strategy's scope, construct
    the ``SeqModel`` outside it, and compile and fit inside it (``tasks.common.build_in_scope``
    does this): Keras's fit builds a model that was constructed in a strategy's scope by
    averaging a first batch across the workers, which fails there (keras-team/keras#20585).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ConfigError("epochs", epochs, "a positive integer")
    if model.optimizer is None:
        raise ConfigError(
            "model", model.name, "a compiled model", "Call zoo.training.compile_model(model, loss=...) before fit"
        )
    schedule = B.parse_bptt(bptt)
    if (schedule.truncates or stream) and _distributed(model):
        raise ConfigError(
            "bptt",
            str(schedule),
            "'full' (and no streaming) under a tf.distribute strategy",
            "Truncated BPTT and streaming update the weights inside a loop over chunks, which tf.distribute "
            "cannot synchronize across replicas; or train without a strategy",
        )
    carrier = B.StateCarrier(model) if (schedule.truncates or stream) else None
    stats = M.GradientStats(model) if monitor else None
    multi_worker = isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
    custom = carrier is not None or stats is not None or multi_worker
    if custom and not isinstance(model, SeqModel):
        raise ConfigError(
            "model",
            type(model).__name__,
            "a zoo.SeqModel for truncated BPTT, streaming, monitoring or multi-worker training",
            "Build it as zoo.SeqModel(inputs, outputs), a functional keras.Model "
            "whose train_step carries these, or pass monitor=False and bptt=None",
        )
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
    if custom:
        if not model.optimizer.built:  # slot variables where the model's variables live (tf.distribute too)
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)
        plan = TrainingPlan(
            k=schedule.k_for(initial_epoch), carrier=carrier, stream=stream, statistics=stats, leading_axis=multi_worker
        )
        cbs.append(BpttCurriculum(schedule, plan))
    cbs.append(guard)
    cbs.extend(callbacks)
    if run_dir is not None:
        if checkpoint:
            cbs.append(C.EpochCheckpoint(run_dir, guard))
        cbs.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True))

    saved_jit = model.jit_compile
    if custom:
        if carrier is not None:
            carrier.attach()
            model.jit_compile = False  # dynamic-shape state variables and a chunk loop: not for XLA
        model.set_training_plan(plan)
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
        if custom:
            if carrier is not None:
                carrier.detach()
                model.jit_compile = saved_jit
            model.set_training_plan(None)
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


class BpttCurriculum(keras.callbacks.Callback):
    """Trains each epoch with its stage's chunk length: a new plan (and a retrace) when K changes.
    Forgets the carried state at every epoch and, when streaming, before every evaluation."""

    def __init__(self, schedule: B.BpttSchedule, plan: TrainingPlan):
        super().__init__()
        self.schedule, self.plan = schedule, plan

    def on_epoch_begin(self, epoch, logs=None):
        if self.plan.carrier is not None:
            self.plan.carrier.forget()
        k = self.schedule.k_for(epoch)
        if k != self.plan.k:
            self.plan = dataclasses.replace(self.plan, k=k)
            self.model.set_training_plan(self.plan)

    def on_test_begin(self, logs=None):
        if self.plan.carrier is not None and self.plan.stream:
            self.plan.carrier.forget()


def _distributed(model: keras.Model) -> bool:
    """True when the model was created, or is trained, in a ``tf.distribute`` strategy's scope."""
    return tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy()


def _replayable(train, steps_per_epoch: int | None, epochs_done: int):
    """One endless iterator over a tf.data pipeline, advanced past the epochs a
    resumed run already saw, so a reshuffling dataset yields the same batches as
    in an uninterrupted run (a new Keras iterator per epoch would restart the
    shuffle order in a new process)."""
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
