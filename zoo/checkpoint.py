"""Training checkpoints and resume.

``<run_dir>/checkpoint/state.npz`` holds every model variable (weights and the dropout
seed states), every optimizer variable (step count, moments), the carried recurrent state
of a streaming run, and the position: finished epochs, steps done in the current epoch and
the global step. It is written atomically at the end of each epoch, every
``checkpoint_every`` steps, and at the step where a signal stopped the run
(:mod:`zoo.preemption`). ``<run_dir>/run.json`` says whether the run is ``running``,
``trained`` (training done, evaluation or export not yet), ``finished``, ``interrupted``
or ``diverged``. ``fit`` resumes a run folder whose run is not finished, from the step it
stopped at.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import keras
import numpy as np

from zoo import files
from zoo.errors import FileProblem
from zoo.files import KEPT, START_FRESH, set_status, status
from zoo.preemption import StopRequests, TrainingInterrupted

STATE = "checkpoint/state.npz"


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a checkpoint was taken: ``epochs_done`` finished epochs, then ``steps_done`` steps of
    the next one; ``global_step`` counts every step since the run began."""

    epochs_done: int = 0
    steps_done: int = 0
    global_step: int = 0


def _variables(model: keras.Model) -> list:
    return list(model.variables) + list(model.optimizer.variables)


def save(model: keras.Model, run_dir: Path, position: Position, carried=()) -> Path:
    """Write the checkpoint atomically; a full or read-only disk leaves the previous one intact and
    raises :class:`FileProblem` naming the file."""
    path = Path(run_dir) / STATE
    arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(_variables(model))}
    arrays.update({f"s{i}": np.asarray(v.numpy()) for i, v in enumerate(carried)})
    fields = {k: np.int64(v) for k, v in dataclasses.asdict(position).items()}
    with files.atomic_path(path, KEPT) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **fields, **arrays)
    return path


def load(model: keras.Model, run_dir: Path, carried=()) -> Position:
    """Restore model + optimizer state (and the carried state, when the checkpoint has it);
    returns where the checkpoint was taken."""
    path = Path(run_dir) / STATE
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = _variables(model)
    try:
        data = np.load(path)
        values = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError) as exc:  # truncated, not an npz, bad zip member
        raise FileProblem(path, f"the checkpoint cannot be read ({type(exc).__name__}: {exc})", START_FRESH) from None
    n = len([k for k in values if k.startswith("v")])
    if n != len(variables) or "epochs_done" not in values:
        raise FileProblem(
            path,
            f"the checkpoint holds {n} variables but this model and optimizer have "
            f"{len(variables)}: it was written by a different model",
            START_FRESH,
        )
    for i, v in enumerate(variables):
        value = values[f"v{i}"]
        if tuple(value.shape) != tuple(v.shape):
            raise FileProblem(
                path, f"variable {v.path} has shape {value.shape} there but {tuple(v.shape)} in this model", START_FRESH
            )
        v.assign(value)
    for i, v in enumerate(carried):
        if f"s{i}" in values:
            v.assign(values[f"s{i}"])
    epochs = int(values["epochs_done"])
    return Position(epochs, int(values.get("steps_done", 0)), int(values.get("global_step", 0)))


def resumable(run_dir: Path) -> bool:
    """A checkpoint exists and the run did not finish."""
    return (Path(run_dir) / STATE).exists() and status(run_dir).get("status") != "finished"


def truncate_steps(path: Path, last_step: int) -> None:
    """Drop the rows after ``last_step`` (its ``step`` column) from a resumed run's grad_norms.csv."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return
    col = rows[0].index("step")
    body = [r for r in rows[1:] if r and int(float(r[col])) <= last_step]
    with files.atomic_path(path, KEPT) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *body])


class Checkpoints(keras.callbacks.Callback):
    """Writes the checkpoint at the end of every epoch, every ``every`` steps (0: never) and, when
    ``stop`` was requested, after the current step -- then raises :class:`TrainingInterrupted`.
    Nothing is written once the run diverged: the last good checkpoint stays.

    ``start`` is where this ``fit`` call begins (a resumed run starts inside an epoch); ``carried``
    the carried-state variables a streaming run must save; ``monitor`` the ``GradientMonitor``,
    whose rows are flushed before a mid-epoch checkpoint so the CSV matches it.
    """

    def __init__(
        self,
        run_dir: Path | None,
        *,
        monitor=None,
        stop: StopRequests | None = None,
        every: int = 0,
        start: Position = Position(),
        carried=(),
    ):
        super().__init__()
        self.run_dir, self.monitor, self.stop, self.every = run_dir, monitor, stop, every
        self.carried = list(carried)
        self.epoch, self.offset, self.global_step = start.epochs_done, start.steps_done, start.global_step

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.monitor is not None and self.monitor.diverged:
            return
        interrupted = self.stop is not None and self.stop.requested
        if interrupted or (self.every and self.global_step % self.every == 0):
            position = Position(self.epoch, self.offset + batch + 1, self.global_step)
            if self.run_dir is not None:
                if self.monitor is not None:
                    self.monitor.flush()
                save(self.model, self.run_dir, position, self.carried)
                status = "interrupted" if interrupted else "running"
                set_status(self.run_dir, status=status, epochs_done=self.epoch, step=self.global_step)
            if interrupted:
                raise TrainingInterrupted(self.stop.signum, self.run_dir, self.epoch, self.global_step)

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        if self.run_dir is None or (self.monitor is not None and self.monitor.diverged):
            return
        save(self.model, self.run_dir, Position(epoch + 1, 0, self.global_step), self.carried)
        set_status(self.run_dir, status="running", epochs_done=epoch + 1, step=self.global_step)
