"""Pieces every task's command line shares: model and training flags, seeds,
run folders and friendly errors.

Flag names are Keras's argument names (``--units``, ``--num-layers``,
``--clipnorm``), so a flag, a ``ModelConfig`` field and a hyperparameter are the
same word.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from zoo.config import CELLS, DTYPES, MERGE_MODES, MODEL_NAMES, ModelConfig


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps the description's line breaks."""


def add_model_arguments(parser: argparse.ArgumentParser, *, default_model: str = "lstm", default_units: int = 64) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=default_model, help=f"zoo model, one of: {', '.join(MODEL_NAMES)}")
    g.add_argument("--units", type=int, default=default_units, help="hidden units per recurrent layer")
    g.add_argument("--num-layers", type=int, default=None, help="depth (default: 1, or 2 for stacked_lstm)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout after every recurrent layer")
    g.add_argument("--recurrent-dropout", type=float, default=0.0, help="Keras recurrent_dropout")
    g.add_argument("--cell", choices=CELLS, default=None, help="cell for bidirectional (lstm|gru) and unshared_rnn (simple|lstm)")
    g.add_argument("--merge-mode", choices=MERGE_MODES, default="concat", help="how bidirectional merges directions")
    g.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="Keras dtype policy of the recurrent layers; mixed_bfloat16 computes in bf16 with float32 "
                        "weights (faster on CPUs with native bf16, see benchmarks/RESULTS.md)")


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: int = 10, batch_size: int = 32, learning_rate: float = 1e-3) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    g.add_argument("--batch-size", type=int, default=batch_size, help="examples per batch")
    g.add_argument("--learning-rate", type=float, default=learning_rate, help="Adam learning rate")
    g.add_argument("--clipnorm", type=float, default=None, help="clip each gradient tensor to this norm (Keras clipnorm)")
    g.add_argument("--global-clipnorm", type=float, default=None, help="clip all gradients jointly to this global norm")
    g.add_argument("--clipvalue", type=float, default=None, help="clip each gradient element to [-v, v]")
    g.add_argument("--seed", type=int, default=0, help="random seed (data split, init, sampling)")
    g.add_argument("--quick", action="store_true", help="tiny data and 1 epoch: a smoke run in seconds")
    g.add_argument("--saved-models", default=None, help="export root (default: $SEQZOO_SAVED_MODELS or ./saved_models)")
    g.add_argument("--runs", default="runs", help="folder for logs and TensorBoard: <runs>/<task>/<model>/<time>/")
    g.add_argument("--no-export", action="store_true", help="train and evaluate only, write no export")
    g.add_argument("--bptt", default=None, help="truncated BPTT: chunk length K in time steps (state carried across chunks without gradient, weights updated after every chunk), or 'full' (ordinary BPTT, the default)")
    g.add_argument("--bptt-schedule", default=None, help="truncation curriculum as K:epochs stages, e.g. 1:2,5:2,20:3,full (the last stage runs to the end)")
    g.add_argument("--run-name", default=None, help="run folder name under <runs>/<task>/<model>/ (default: a timestamp); an unfinished run of that name resumes")
    g.add_argument("--resume", choices=("auto", "never"), default="auto", help="auto: continue the newest unfinished run of this same command from its last epoch checkpoint; never: always start a new run")
    g.add_argument("--no-monitor", action="store_true", help="do not log per-step gradient norms (grad_norms.csv/.png, TensorBoard step/*)")


def config_from_args(args: argparse.Namespace, *, return_sequences: bool) -> ModelConfig:
    num_layers = args.num_layers
    if num_layers is None:
        num_layers = 2 if args.model == "stacked_lstm" else 1
    return ModelConfig(
        model=args.model,
        units=args.units,
        num_layers=num_layers,
        dropout=args.dropout,
        recurrent_dropout=args.recurrent_dropout,
        cell=args.cell,
        merge_mode=args.merge_mode,
        return_sequences=return_sequences,
        dtype=getattr(args, "dtype", "float32"),
    )


def training_kwargs(args: argparse.Namespace) -> dict:
    """The ``zoo.training.compile_model`` keywords the flags set."""
    return {
        "learning_rate": args.learning_rate,
        "clipnorm": args.clipnorm,
        "global_clipnorm": args.global_clipnorm,
        "clipvalue": args.clipvalue,
    }


def fit_kwargs(args: argparse.Namespace) -> dict:
    """The ``zoo.training.fit`` keywords the flags set (``bptt``, ``monitor``, ``resume``)."""
    from zoo.bptt import parse_bptt

    bptt, schedule = getattr(args, "bptt", None), getattr(args, "bptt_schedule", None)
    if bptt is not None and schedule is not None:
        raise ValueError("Pass --bptt K or --bptt-schedule K:epochs,..., not both")
    value = schedule if schedule is not None else bptt
    if value is not None:
        value = str(parse_bptt(value))  # fails early with a clear message
    return {
        "bptt": value,
        "monitor": not getattr(args, "no_monitor", False),
        "resume": getattr(args, "resume", "auto") != "never",
    }


# Flags that do not change what is trained: left out of a run's command key.
_NOT_IN_KEY = {"runs", "run_name", "resume", "saved_models", "no_export"}


def command_key(args: argparse.Namespace) -> str:
    """A short hash of the training flags: the same command gives the same key."""
    import hashlib
    import json

    items = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IN_KEY and not callable(v)}
    return hashlib.sha1(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolve_run_dir(args: argparse.Namespace, task: str, model: str) -> Path:
    """The run folder for this command: ``<runs>/<task>/<model>/<run-name or timestamp>/``.

    With ``--resume auto`` (default) and no ``--run-name``, the newest
    unfinished run (checkpoint present, not finished) of the same command
    (same flags, see :func:`command_key`) is reused, so re-running a killed
    command continues it. ``command.json`` in the folder records the key.
    """
    import json

    base = Path(args.runs) / task / model
    key = command_key(args)
    name = getattr(args, "run_name", None)
    folder = None
    if name:
        folder = base / name
    elif getattr(args, "resume", "auto") != "never" and base.is_dir():
        for cand in sorted((p for p in base.iterdir() if p.is_dir()), reverse=True):
            cmd, status = cand / "command.json", cand / "run.json"
            if not (cmd.exists() and (cand / "checkpoint" / "state.npz").exists()):
                continue
            finished = status.exists() and json.loads(status.read_text()).get("status") == "finished"
            if json.loads(cmd.read_text()).get("key") == key and not finished:
                folder = cand
                break
    if folder is None:
        folder = run_dir(args.runs, task, model)
        while folder.exists():  # two runs started in the same second
            folder = folder.with_name(folder.name + "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "command.json").write_text(json.dumps({"key": key, "argv": sys.argv[1:]}, indent=2))
    return folder


def set_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def run_dir(runs: str | os.PathLike, task: str, model: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(runs) / task / model / stamp


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (set before TF is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cli(run: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, run, and turn expected failures into a one-line error and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------- tf.distribute (data-parallel training)

STRATEGIES = ("none", "mirrored", "multiworker")
_STRATEGIES: dict = {}  # one strategy per process: TensorFlow allows a single collective setup


def add_strategy_argument(parser: argparse.ArgumentParser) -> None:
    """``--strategy none|mirrored|multiworker`` (a task that adds it builds and compiles in ``strategy_scope``)."""
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="none",
        help="data-parallel training: mirrored (this machine's devices) or multiworker "
             "(MultiWorkerMirroredStrategy; every worker process runs the same command with its TF_CONFIG)",
    )


def distribution_strategy(name: str):
    """The ``tf.distribute`` strategy for ``--strategy`` (None for "none"), created once per process.

    Call it first in ``run()``: MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name == "none":
        return None
    if name not in _STRATEGIES:
        import json

        import tensorflow as tf

        if name == "multiworker":
            try:
                cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"]
            except (KeyError, ValueError, TypeError):
                raise ValueError(
                    "--strategy multiworker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                    "[\"127.0.0.1:12345\", \"127.0.0.1:23456\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
                    "in every worker (its own index)"
                ) from None
            try:
                _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"Cannot start MultiWorkerMirroredStrategy for workers {cluster}: {exc} (create it "
                                 "before any other TensorFlow op: call strategy_scope(args) first in run())") from None
        else:
            _STRATEGIES[name] = tf.distribute.MirroredStrategy()
    return _STRATEGIES[name]


def strategy_scope(args: argparse.Namespace):
    """``with strategy_scope(args): model = compile(build_model(...))`` -- a no-op without ``--strategy``."""
    import contextlib

    strategy = distribution_strategy(getattr(args, "strategy", "none"))
    return contextlib.nullcontext() if strategy is None else strategy.scope()
