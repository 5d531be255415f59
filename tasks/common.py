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
from pathlib import Path
from typing import Callable, Sequence

from zoo.config import CELLS, MERGE_MODES, MODEL_NAMES, ModelConfig


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
    )


def training_kwargs(args: argparse.Namespace) -> dict:
    """The ``zoo.training.compile_model`` keywords the flags set."""
    return {
        "learning_rate": args.learning_rate,
        "clipnorm": args.clipnorm,
        "global_clipnorm": args.global_clipnorm,
        "clipvalue": args.clipvalue,
    }


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
