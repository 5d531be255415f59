"""Per-epoch training checkpoints and resume.

``<run_dir>/checkpoint/state.npz`` holds every model variable (weights and
the dropout seed states), every optimizer variable (step count, moments) and
the number of finished epochs, written atomically at the end of each epoch.
``<run_dir>/run.json`` says whether the run is ``running``, ``finished`` or
``diverged``. ``fit`` resumes a run folder whose run is not finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from zoo.errors import FileProblem

STATE = "checkpoint/state.npz"
# What to do about a damaged or foreign run folder, in both vocabularies.
START_FRESH = (
    "Delete the run folder or start a fresh run (resume=False in zoo.training.fit, "
    "resume='never' in a task's Options, --resume never on the command line)"
)


def _variables(model: keras.Model) -> list:
    return list(model.variables) + list(model.optimizer.variables)


def save(model: keras.Model, run_dir: Path, epochs_done: int) -> Path:
    path = Path(run_dir) / STATE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(_variables(model))}
    np.savez(tmp, epochs_done=np.int64(epochs_done), **arrays)
    os.replace(tmp, path)
    return path


def load(model: keras.Model, run_dir: Path) -> int:
    """Restore model + optimizer state; returns the number of finished epochs."""
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
    return int(values["epochs_done"])


def read_json(path: Path, what: str) -> dict:
    """A JSON object seqzoo wrote into a run folder; a damaged one is a :class:`FileProblem` that
    names the file (``what`` it holds) and how to start fresh."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileProblem(path, f"the {what} is damaged ({exc})", START_FRESH) from None
    if not isinstance(data, dict):
        raise FileProblem(path, f"the {what} is damaged (not a JSON object)", START_FRESH)
    return data


def status(run_dir: Path) -> dict:
    """The run's ``run.json`` ({} when there is none)."""
    path = Path(run_dir) / "run.json"
    return read_json(path, "run status") if path.exists() else {}


def set_status(run_dir: Path, **fields) -> None:
    path = Path(run_dir) / "run.json"
    data = {**status(run_dir), **fields}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def resumable(run_dir: Path) -> bool:
    """A checkpoint exists and the run did not finish."""
    return (Path(run_dir) / STATE).exists() and status(run_dir).get("status") != "finished"


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the checkpoint after every epoch, unless the run diverged."""

    def __init__(self, run_dir: Path, monitor=None):
        super().__init__()
        self.run_dir, self.monitor = Path(run_dir), monitor

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None and self.monitor.diverged:
            return  # keep the last good checkpoint
        save(self.model, self.run_dir, epoch + 1)
        set_status(self.run_dir, status="running", epochs_done=epoch + 1, step=getattr(self.monitor, "step", None))
