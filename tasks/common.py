"""What every task's ``run`` shares: run folders, seeds and the tf.distribute strategy.

Settings come in as a task's ``Options`` (:mod:`tasks.options`).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

from tasks.options import STRATEGIES, TaskOptions
from zoo import files
from zoo.errors import ConfigError

# Settings that do not change what is trained: left out of a run's command key.
_NOT_IN_KEY = {"runs", "run_name", "resume", "saved_models", "export", "checkpoint_every"}


def command_key(options: TaskOptions) -> str:
    """A short hash of the training settings: the same settings give the same key."""
    import hashlib
    import json

    items = {k: v for k, v in sorted(options.to_dict().items()) if k not in _NOT_IN_KEY}
    return hashlib.sha1(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:12]


def check_host(host: str, port: int, timeout: float = 5.0) -> None:
    """Raise ConnectionError at once when ``host`` cannot be reached: offline, a dataset
    library would otherwise spend minutes in download retries before failing."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {host}:{port}: {exc}") from None


def resolve_run_dir(options: TaskOptions, task: str, model: str) -> Path:
    """The run folder for these options: ``<runs>/<task>/<model>/<run_name or timestamp>/``.

    With ``resume="auto"`` (default) and no ``run_name``, the newest unfinished run
    (checkpoint present, not finished) of the same settings (see :func:`command_key`)
    is reused, so re-running a killed command continues it. ``command.json`` in the
    folder records the key. The folder is locked for this process (see :func:`finish_run`).
    Under ``strategy="multiworker"``, worker ``i > 0`` keeps its folders under ``worker<i>/``.
    """
    import json

    from zoo import checkpoint

    base = Path(options.runs) / task / model
    if options.strategy == "multiworker" and _worker_index():  # each worker writes its own folder
        base = base / f"worker{_worker_index()}"
    key = command_key(options)
    folder = None
    if options.run_name:
        folder = base / options.run_name
    elif options.resume != "never" and base.is_dir():
        for cand in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True):
            cmd = cand / "command.json"
            # A checkpoint of its own or of a part trained first (a classifier's distillation teachers).
            started = (cand / checkpoint.STATE).exists() or any(cand.glob(f"*/{checkpoint.STATE}"))
            if not (cmd.exists() and started):
                continue
            finished = files.status(cand).get("status") == "finished"
            if files.read_json(cmd, "run's settings record").get("key") == key and not finished:
                folder = cand
                break
    if folder is None:
        folder = run_dir(options.runs, task, model)
        while folder.exists():  # two runs started in the same second
            folder = folder.with_name(folder.name + "_")
    files.lock_folder(folder, BUSY)  # held until finish_run (or the process ends)
    files.write_text(folder / "command.json", json.dumps({"key": key, "argv": sys.argv[1:]}, indent=2))
    return folder


def _worker_index() -> int:
    import json

    try:
        return int(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    except (KeyError, ValueError, TypeError):
        return 0


# What to do when another command works in the run folder.
BUSY = "Wait for it to finish, or give this run another folder (run_name= in Options, --run-name)"


def check_folders(options: TaskOptions) -> None:
    """Before any work: the runs folder and, when exporting, the export root exist and take a file,
    so a read-only, missing or unwritable location fails in the first seconds, not after training."""
    files.probe_writable(options.runs, "runs", "run folders")
    if options.export:
        from tasks.versions import saved_models_root

        files.probe_writable(saved_models_root(options.saved_models), "saved_models", "exports")


def finish_run(folder: Path) -> None:
    """Mark the run finished (training, evaluation and export done) and release its folder."""
    files.set_status(folder, status="finished")
    files.unlock_folder(folder)


def set_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def run_dir(runs: str | os.PathLike, task: str, model: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(runs) / task / model / stamp


# ----------------------------------------------------------------------------- tf.distribute (data-parallel training)

_STRATEGIES: dict = {}  # one strategy per process: TensorFlow allows a single collective setup


def distribution_strategy(name: str):
    """The ``tf.distribute`` strategy for ``--strategy`` (None for "none"), created once per process.

    Call it first in ``run()``: MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    """
    if name not in STRATEGIES:
        raise ConfigError("strategy", name, "one of " + ", ".join(STRATEGIES))
    if name == "none":
        return None
    if name not in _STRATEGIES:
        import json

        import tensorflow as tf

        if name == "multiworker":
            try:
                cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"]
            except (KeyError, ValueError, TypeError):
                raise ConfigError(
                    "strategy",
                    name,
                    "set together with the TF_CONFIG environment variable",
                    'strategy \'multiworker\' needs TF_CONFIG, e.g. TF_CONFIG=\'{"cluster": {"worker": '
                    '["127.0.0.1:12345", "127.0.0.1:23456"]}, "task": {"type": "worker", "index": 0}}\' '
                    "in every worker (its own index)",
                ) from None
            try:
                _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(
                    "strategy",
                    name,
                    "started before any other TensorFlow op",
                    f"Cannot start MultiWorkerMirroredStrategy for workers {cluster}: {exc} (call "
                    "distribution_strategy first in run())",
                ) from None
        else:
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
    return _STRATEGIES[name]


def strategy_scope(options: TaskOptions):
    """``with strategy_scope(options): model = compile(build_model(...))`` -- a no-op for strategy "none"."""
    import contextlib

    strategy = distribution_strategy(options.strategy)
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def build_in_scope(options: TaskOptions, build):
    """``build()`` (a function returning a ``zoo.SeqModel``) with its variables in the scope of
    ``options.strategy``. Under multiworker the model object itself is made outside the scope
    (see ``zoo.training.fit``); compile and fit it inside ``strategy_scope(options)``."""
    with strategy_scope(options):
        model = build()
    if options.strategy != "multiworker":
        return model
    from zoo.train_step import SeqModel

    return SeqModel(model.inputs, model.outputs, name=model.name)  # the same layers and variables


def schedule_callbacks(options: TaskOptions) -> list:
    """The callbacks that carry out ``options.lr_schedule`` (none for a constant rate).

    Per epoch, so a resumed run (``initial_epoch``) continues the same curve.
    """
    import math

    import keras

    if options.lr_schedule == "cosine":
        lr, epochs = options.learning_rate, options.epochs
        return [keras.callbacks.LearningRateScheduler(lambda e: lr * 0.5 * (1 + math.cos(math.pi * e / epochs)))]
    return []
