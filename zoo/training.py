"""The one compile + fit path that the CLI, the tuner, the studies and the tests use.

The mechanics live one module each, imported in this order (none imports a later one):
:mod:`zoo.optimizers` (dense gradients, clipping), :mod:`zoo.bptt` (schedules, carried
state, the chunk loop), :mod:`zoo.train_step` (the ``keras.Model`` subclass whose
``train_step`` runs them), :mod:`zoo.monitor` (gradient norms, NaN stop),
:mod:`zoo.checkpoint` (checkpoints at epoch ends, every N steps and on a signal; resume),
and this module on top. Beneath them, :mod:`zoo.files` (atomic writes, the run folder's
lock, ``run.json``) and :mod:`zoo.preemption` (SIGTERM and Ctrl-C as stop requests).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from zoo import bptt as B
from zoo import checkpoint as C
from zoo import files
from zoo import monitor as M
from zoo.errors import ConfigError
from zoo.optimizers import make_optimizer
from zoo.preemption import StopRequests, TrainingInterrupted
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
    checkpoint_every: int = 0,
    finish: bool = True,
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
            continue it from the step it stopped at (weights, optimizer, data
            position, carried state); the result equals an uninterrupted run.
        checkpoint: write ``run_dir/checkpoint/state.npz`` after every epoch, and
            at the step where SIGTERM or Ctrl-C stopped the run (which then raises
            :class:`zoo.preemption.TrainingInterrupted`).
        checkpoint_every: also write it every this many steps (0: only at epoch
            ends), which bounds what a ``kill -9`` can lose.
        finish: mark the run ``finished`` in ``run.json`` at the end; ``False`` marks
            it ``trained``, so that a command whose evaluation or export is cut short
            resumes there (with no epochs left, ``fit`` trains nothing and returns the
            History recorded in ``history.csv``) -- the caller marks it finished.

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
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ConfigError("checkpoint_every", checkpoint_every, "a whole number of steps >= 0 (0: at epoch ends only)")
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
    carried = [v for slot in carrier.slots for v in slot.variables] if carrier is not None and stream else []
    replay = run_dir is not None and checkpoint
    steps = _epoch_steps(train, steps_per_epoch) if replay else None
    lock = files.locked_folder(run_dir, BUSY) if run_dir is not None else contextlib.nullcontext()
    with lock, StopRequests() as stop:
        start = C.Position()
        if run_dir is not None:
            if resume and C.resumable(run_dir):
                start = _resume(model, run_dir, carried, steps, epochs, verbose)
            files.set_status(
                run_dir,
                status="running",
                epochs=epochs,
                bptt=str(schedule),
                stream=stream,
                resumed_after_epoch=start.epochs_done,  # 0: this command trains from the start
            )

        guard = M.GradientMonitor(stats.names if stats else None, run_dir, initial_step=start.global_step)
        cbs: list[keras.callbacks.Callback] = []
        if custom:
            if not model.optimizer.built:  # slot variables where the model's variables live (tf.distribute too)
                with model.distribute_strategy.scope():
                    model.optimizer.build(model.trainable_variables)
            plan = TrainingPlan(
                k=schedule.k_for(start.epochs_done),
                carrier=carrier,
                stream=stream,
                statistics=stats,
                leading_axis=multi_worker,
            )
            cbs.append(BpttCurriculum(schedule, plan, keep_first=bool(carried) and start.steps_done > 0))
        cbs.append(guard)
        cbs.extend(callbacks)
        cbs.append(
            C.Checkpoints(
                run_dir if checkpoint else None,
                monitor=guard,
                stop=stop,
                every=checkpoint_every,
                start=start,
                carried=carried,
            )
        )
        if run_dir is not None:
            cbs.append(HistoryCSV(str(run_dir / "history.csv"), append=True))

        saved_jit = model.jit_compile
        if custom:
            if carrier is not None:
                carrier.attach()
                model.jit_compile = False  # dynamic-shape state variables and a chunk loop: not for XLA
            model.set_training_plan(plan)
        fit_kwargs = dict(
            validation_data=validation,
            callbacks=cbs,
            verbose=verbose,
            class_weight=class_weight,
            # Keras shuffles arrays itself; a tf.data pipeline (or a resumed run's generator) keeps its own order.
            shuffle=not isinstance(train, tf.data.Dataset),
        )
        try:
            histories = []
            epoch = start.epochs_done
            if steps is None or not start.steps_done:
                data = _replay(train, epoch * steps) if steps else train
                if epoch < epochs:
                    histories.append(
                        model.fit(
                            data,
                            epochs=epochs,
                            initial_epoch=epoch,
                            steps_per_epoch=steps or steps_per_epoch,
                            **fit_kwargs,
                        )
                    )
            else:  # resumed inside an epoch: finish that epoch, then the rest
                # One iterator serves both calls: a reshuffling pipeline draws new shuffle orders for every
                # new iterator, so a second one would not yield the batches an uninterrupted run sees.
                batches = iter(_replay(train, epoch * steps + start.steps_done))
                rest_of_epoch = (b for b in itertools.islice(batches, steps - start.steps_done))
                histories.append(
                    model.fit(
                        rest_of_epoch,
                        epochs=epoch + 1,
                        initial_epoch=epoch,
                        steps_per_epoch=steps - start.steps_done,
                        **fit_kwargs,
                    )
                )
                if epoch + 1 < epochs:
                    histories.append(
                        model.fit(
                            (b for b in batches),
                            epochs=epochs,
                            initial_epoch=epoch + 1,
                            steps_per_epoch=steps,
                            **fit_kwargs,
                        )
                    )
        except TrainingInterrupted:
            guard.flush()
            raise
        finally:
            if custom:
                if carrier is not None:
                    carrier.detach()
                    model.jit_compile = saved_jit
                model.set_training_plan(None)
        history = _one_history(model, histories, run_dir)
        history.steps = guard.steps
        if replay and histories and not guard.diverged:
            # The weights training ends with (EarlyStopping may have restored an earlier epoch's), so that
            # a command resumed after training evaluates and exports the same model.
            C.save(model, run_dir, C.Position(epochs, 0, guard.step), carried)
        if guard.diverged:
            kept = ""
            if run_dir is not None:
                done = files.status(run_dir).get("epochs_done")
                files.set_status(run_dir, status="diverged", message=guard.diverged)
                if checkpoint and done:
                    kept = f" The last good checkpoint (after epoch {done}) is kept in {run_dir / C.STATE}."
            raise M.TrainingDiverged(guard.diverged + kept)
        if stop.requested:  # the signal came during the last validation: training is done, what follows is not
            if run_dir is not None:
                files.set_status(run_dir, status="trained")
            raise TrainingInterrupted(stop.signum, run_dir if checkpoint else None, epochs - 1, guard.step)
        if run_dir is not None:
            files.set_status(run_dir, status="finished" if finish else "trained")
    return history


# Two commands training into one run folder would interleave their logs and checkpoints.
BUSY = "Wait for it to finish, or give this run another folder (run_name= in a task's Options, --run-name)"


def _resume(model, run_dir: Path, carried, steps: int | None, epochs: int, verbose) -> C.Position:
    """Load the run's checkpoint and cut its logs back to it."""
    start = C.load(model, run_dir, carried)
    if files.status(run_dir).get("status") == "trained":  # stopped while evaluating or exporting: no more training
        start = C.Position(epochs, 0, start.global_step)
    if start.steps_done and not steps:  # no replayable data position: the epoch starts again
        print(
            f"note: {run_dir} stopped inside epoch {start.epochs_done + 1}; its data cannot be replayed, so it starts again"
        )
        start = C.Position(start.epochs_done, 0, start.global_step - start.steps_done)
    M.truncate_csv(run_dir / "history.csv", start.epochs_done)
    C.truncate_steps(run_dir / "grad_norms.csv", start.global_step)
    if verbose:
        if start.epochs_done >= epochs:
            print(f"Resuming {run_dir}: training was complete")
        elif start.steps_done:
            print(f"Resuming {run_dir} at step {start.steps_done} of epoch {start.epochs_done + 1} of {epochs}")
        else:
            print(f"Resuming {run_dir} after epoch {start.epochs_done} of {epochs}")
    return start


def _one_history(model: keras.Model, histories: list, run_dir: Path | None) -> keras.callbacks.History:
    """The History of the whole run: one ``fit`` call's own, or rebuilt (through the callback's public
    hooks) from several calls, or from ``history.csv`` when a resumed run had nothing left to train."""
    if len(histories) == 1:
        return histories[0]
    history = keras.callbacks.History()
    history.set_model(model)
    history.on_train_begin()
    if histories:
        for part in histories:
            for i, epoch in enumerate(part.epoch):
                history.on_epoch_end(epoch, {k: v[i] for k, v in part.history.items()})
    elif run_dir is not None and (run_dir / "history.csv").exists():
        with open(run_dir / "history.csv", newline="") as f:
            for row in csv.DictReader(f):
                epoch = int(row.pop("epoch"))
                history.on_epoch_end(epoch, {k: float(v) for k, v in row.items() if v not in ("", None)})
    return history


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras's CSVLogger, whose write errors (a full disk) name the file."""

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError as exc:
            raise files.write_failed(self.filename, exc, files.KEPT) from None

    def on_epoch_end(self, epoch, logs=None):
        try:
            super().on_epoch_end(epoch, logs)
        except OSError as exc:
            raise files.write_failed(self.filename, exc, files.KEPT) from None


class BpttCurriculum(keras.callbacks.Callback):
    """Trains each epoch with its stage's chunk length: a new plan (and a retrace) when K changes.
    Forgets the carried state at every epoch and, when streaming, before every evaluation."""

    def __init__(self, schedule: B.BpttSchedule, plan: TrainingPlan, keep_first: bool = False):
        super().__init__()
        self.schedule, self.plan = schedule, plan
        self.keep = keep_first  # a run resumed inside an epoch continues its restored streams

    def on_epoch_begin(self, epoch, logs=None):
        if self.plan.carrier is not None and not self.keep:
            self.plan.carrier.forget()
        self.keep = False
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


def _epoch_steps(train, steps_per_epoch: int | None) -> int | None:
    """Steps per epoch of a tf.data pipeline a resume can replay; None when it cannot be replayed
    (not a tf.data.Dataset, or of unknown or infinite length without ``steps_per_epoch``)."""
    if not isinstance(train, tf.data.Dataset):
        return None
    n = int(train.cardinality())
    if steps_per_epoch is None:
        return n if n > 0 else None
    return steps_per_epoch


def _replay(train: tf.data.Dataset, skip: int) -> tf.data.Dataset:
    """One endless pass over ``train``, advanced past the ``skip`` batches a resumed run already saw,
    so a reshuffling dataset yields the same batches as in an uninterrupted run (a new Keras
    iterator per epoch would restart the shuffle order in a new process)."""
    if int(train.cardinality()) != int(tf.data.INFINITE_CARDINALITY):
        train = train.repeat()
    return train.skip(skip)
