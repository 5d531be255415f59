"""The typed task API every task shares: ``Options`` -> ``run`` -> ``Result``.

A task module exposes a frozen ``Options`` dataclass (every setting its command line
has, validated on construction), ``run(options) -> Result`` and ``report(result)``
(the summary the command prints). Python callers and the command line take the same
path::

    from tasks import sequence_classification as classify
    result = classify.run(classify.Options(model="bidirectional", epochs=30))
    result = classify.run(classify.Options.quick(units=8))   # the --quick preset; explicit values win

Fields carry their help text, group and flag in ``dataclasses.field`` metadata
(:func:`option`), so the command line is generated from them (:func:`build_parser`)
and an error about a field shows as its flag there (``--seq-len``) and as its name here
(``seq_len``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from zoo.config import CELLS, DTYPES, MERGE_MODES, MODEL_NAMES, ModelConfig, cells_for, depth_range
from zoo.errors import ConfigError, SeqzooError

RESUME_MODES = ("auto", "never")
SEED_MAX = 2**32 - 1  # the largest seed NumPy and TensorFlow accept
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("none", "mirrored", "multiworker")


def option(
    default: Any,
    help: str,
    *,
    group: str = "training",
    flag: str | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with what its command-line flag needs. A bool field whose default is
    True gets a ``--no-...`` flag (``flag=`` names it) that sets it False."""
    metadata = {"help": help, "group": group, "flag": flag, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def default(name: str, value: Any) -> Any:
    """A :class:`TaskOptions` field with another default (for a task's subclass)."""
    base = {f.name: f for f in dataclasses.fields(TaskOptions)}[name]
    return dataclasses.field(default=value, metadata=base.metadata)


# ----------------------------------------------------------------------------- validation


def positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(name, value, "a positive integer" + (" or None" if optional else ""))


def non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(name, value, "an integer >= 0")


def positive_float(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    # isfinite: inf and nan pass "> 0" or fail only later, deep in Keras or as a diverged run
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(name, value, "a positive finite number" + (" or None" if optional else ""))


def fraction(name: str, value: Any, *, closed: bool = False) -> None:
    """``value`` in [0, 1) ([0, 1] with ``closed``)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (0 <= value <= 1 if closed else 0 <= value < 1)
    )
    if not ok:
        raise ConfigError(name, value, f"a number in [0, 1{']' if closed else ')'}")


def seed(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(name, value, f"an integer in [0, {SEED_MAX}] (0 to 2**32 - 1)")


def run_name(name: str, value: Any) -> None:
    """A single folder name: a separator or '..' would put the run outside <runs>/<task>/<model>/."""
    if value is None:
        return
    # both separators everywhere: a run folder's name should mean the same on every system
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ConfigError(
            name,
            value,
            "a plain folder name (no '/', '\\' or '..')",
            "The run is written to <runs>/<task>/<model>/<run name>/; choose the parent folder with runs (--runs)",
        )


@functools.cache
def _typed_fields(cls: type) -> tuple[tuple[str, type, bool], ...]:
    """(name, bool or str, whether None is allowed) for each bool or str field of ``cls``."""
    hints = typing.get_type_hints(cls)
    typed = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kind = _value_type(hint)
        if kind in (bool, str):
            typed.append((f.name, kind, type(None) in typing.get_args(hint)))
    return tuple(typed)


def check_types(options: Any) -> None:
    """Refuse a bool or str field given another type (``export="no"`` would be truthy and export).

    The kinds come from the dataclass annotations, so a new field is checked without a line here.
    A path given as ``pathlib.Path`` to a str field is kept as its string.
    """
    for name, kind, optional in _typed_fields(type(options)):
        value = getattr(options, name)
        if value is None and optional:
            continue
        if kind is str and isinstance(value, os.PathLike):
            object.__setattr__(options, name, os.fspath(value))  # frozen: the one place it is converted
            continue
        if not isinstance(value, kind):
            expected = "True or False" if kind is bool else "a string"
            raise ConfigError(name, value, expected + (" or None" if optional else ""))


def one_of(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(name, value, "one of " + ", ".join(map(str, choices)))


# ----------------------------------------------------------------------------- options every task has


@dataclass(frozen=True)
class TaskOptions:
    """Model, training and output settings that every task shares (a task subclasses it,
    adds its data settings and may change defaults)."""

    # The --quick preset: tiny data and one epoch, a smoke run in seconds.
    QUICK: ClassVar[dict[str, Any]] = {"small_data": True, "epochs": 1}
    # Named recipes (--preset NAME): settings measured to reach a published figure, each
    # documented where the task documents its benchmark.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    # model
    model: str = option("lstm", f"zoo model, one of: {', '.join(MODEL_NAMES)}", group="model")
    units: int = option(64, "hidden units per recurrent layer", group="model")
    num_layers: int | None = option(None, "depth (None: 1, or 2 for stacked_lstm)", group="model")
    dropout: float = option(0.0, "dropout after every recurrent layer", group="model")
    recurrent_dropout: float = option(0.0, "Keras recurrent_dropout", group="model")
    cell: str | None = option(
        None, "cell for bidirectional (lstm|gru) and unshared_rnn (simple|lstm)", group="model", choices=CELLS
    )
    merge_mode: str = option("concat", "how bidirectional merges directions", group="model", choices=MERGE_MODES)
    dtype: str = option(
        "float32",
        "Keras dtype policy of the recurrent layers; mixed_bfloat16 computes in bf16 with float32 weights",
        group="model",
        choices=DTYPES,
    )
    fused: bool = option(
        True,
        "use seqzoo's fused CPU loop for LSTM/GRU layers (off: stock keras.layers.LSTM/GRU, same weights)",
        group="model",
        flag="--no-fused",
    )
    # training
    epochs: int = option(10, "training epochs")
    batch_size: int = option(32, "examples per batch")
    learning_rate: float = option(1e-3, "Adam learning rate")
    lr_schedule: str = option(
        "constant",
        "learning rate per epoch: constant, or cosine decay from learning_rate to 0 over epochs",
        choices=LR_SCHEDULES,
    )
    clipnorm: float | None = option(None, "clip each gradient tensor to this norm (Keras clipnorm)")
    global_clipnorm: float | None = option(None, "clip all gradients jointly to this global norm")
    clipvalue: float | None = option(None, "clip each gradient element to [-v, v]")
    bptt: str | None = option(
        None,
        "truncated BPTT: chunk length K in time steps (state carried across chunks "
        "without gradient, weights updated after every chunk), 'full' (ordinary BPTT, the "
        "default), or a curriculum of K:epochs stages such as 1:2,5:2,20:3,full",
    )
    monitor: bool = option(
        True, "log per-step gradient norms (grad_norms.csv/.png, TensorBoard step/*)", flag="--no-monitor"
    )
    seed: int = option(0, "random seed (data split, initialization, sampling)")
    small_data: bool = option(False, "train and test on a small subset of the data (part of the quick preset)")
    strategy: str = option(
        "none",
        "data-parallel training: mirrored (this machine's devices) or multiworker "
        "(MultiWorkerMirroredStrategy; every worker runs the same command with its TF_CONFIG)",
        choices=STRATEGIES,
    )
    # output
    runs: str = option("runs", "folder for logs and TensorBoard: <runs>/<task>/<model>/<run name>/", group="output")
    run_name: str | None = option(
        None,
        "run folder name under <runs>/<task>/<model>/ (default: a timestamp); an unfinished run of that name resumes",
        group="output",
    )
    resume: str = option(
        "auto",
        "auto: continue the newest unfinished run of the same settings from its last "
        "checkpoint; never: always start a new run",
        group="output",
        choices=RESUME_MODES,
    )
    checkpoint_every: int = option(
        0,
        "also checkpoint every N training steps (0: at the end of each epoch, and where SIGTERM or Ctrl-C "
        "stops the run); bounds what a kill -9 can lose",
        group="output",
    )
    export: bool = option(
        True, "write a versioned export (SavedModel, model.keras, card.json)", group="output", flag="--no-export"
    )
    saved_models: str | None = option(
        None, "export root (default: $SEQZOO_SAVED_MODELS or ./saved_models)", group="output"
    )

    def __post_init__(self) -> None:
        check_types(self)
        one_of("model", self.model, MODEL_NAMES)
        positive_int("units", self.units)
        positive_int("num_layers", self.num_layers, optional=True)
        fraction("dropout", self.dropout)
        fraction("recurrent_dropout", self.recurrent_dropout)
        if self.cell is not None:
            one_of("cell", self.cell, CELLS)
        one_of("merge_mode", self.merge_mode, MERGE_MODES)
        one_of("dtype", self.dtype, DTYPES)
        positive_int("epochs", self.epochs)
        non_negative_int("checkpoint_every", self.checkpoint_every)
        positive_int("batch_size", self.batch_size)
        positive_float("learning_rate", self.learning_rate)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for name in ("clipnorm", "global_clipnorm", "clipvalue"):
            positive_float(name, getattr(self, name), optional=True)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ConfigError(
                "global_clipnorm",
                self.global_clipnorm,
                "None when clipnorm is set",
                "Clip per variable (clipnorm) or jointly (global_clipnorm), not both",
            )
        if self.bptt is not None:
            from zoo.bptt import parse_bptt

            parse_bptt(self.bptt)  # its ConfigError names bptt and what a stage must be
        seed("seed", self.seed)
        run_name("run_name", self.run_name)
        one_of("strategy", self.strategy, STRATEGIES)
        one_of("resume", self.resume, RESUME_MODES)
        # Blame the setting that does not fit the model, not the model: --model gru --cell lstm is a bad cell.
        if self.cell is not None and self.cell not in cells_for(self.model):
            allowed = cells_for(self.model)
            expected = f"unset or {allowed[0]!r}" if len(allowed) == 1 else "one of " + ", ".join(allowed)
            raise ConfigError(
                "cell",
                self.cell,
                f"{expected} for model {self.model!r}",
                "Only bidirectional (lstm|gru) and unshared_rnn (simple|lstm) choose a cell",
            )
        if self.num_layers is not None:
            low, high = depth_range(self.model)
            if self.num_layers < low or (high is not None and self.num_layers > high):
                bound = f"exactly {low}" if low == high else f"at least {low}"
                hint = {
                    "lstm": "Use model 'stacked_lstm' for num_layers >= 2",
                    "stacked_lstm": "Use model 'lstm' for a single layer",
                }.get(self.model, "")
                raise ConfigError("num_layers", self.num_layers, f"{bound} for model {self.model!r}", hint)
        try:
            self.model_config()
        except ValueError as exc:
            raise ConfigError("model", self.model, "a model these settings fit", str(exc)) from None

    # Whether the model predicts at every step (language models) or once per sequence.
    RETURN_SEQUENCES: ClassVar[bool] = False

    @classmethod
    def quick(cls, **overrides: Any):
        """The ``--quick`` preset (``QUICK``) with ``overrides`` on top: what the caller sets wins."""
        return cls(**{**cls.QUICK, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides: Any):
        """The named recipe ``PRESETS[name]`` with ``overrides`` on top: what the caller sets wins."""
        if name not in cls.PRESETS:
            raise ConfigError("preset", name, "one of " + (", ".join(cls.PRESETS) or "(this task has none)"))
        return cls(**{**cls.PRESETS[name], **overrides})

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def model_config(self, **changes: Any) -> ModelConfig:
        """The body these options describe (``changes`` override single fields)."""
        num_layers = self.num_layers if self.num_layers is not None else (2 if self.model == "stacked_lstm" else 1)
        fields = {
            "model": self.model,
            "units": self.units,
            "num_layers": num_layers,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "cell": self.cell,
            "merge_mode": self.merge_mode,
            "return_sequences": self.RETURN_SEQUENCES,
            "dtype": self.dtype,
            "fused": self.fused,
        }
        return ModelConfig(**{**fields, **changes})

    def training_kwargs(self) -> dict[str, Any]:
        """The ``zoo.training.compile_model`` keywords these options set."""
        return {
            "learning_rate": self.learning_rate,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
        }

    def fit_kwargs(self) -> dict[str, Any]:
        """The ``zoo.training.fit`` keywords these options set."""
        return {
            "bptt": self.bptt,
            "monitor": self.monitor,
            "resume": self.resume != "never",
            "checkpoint_every": self.checkpoint_every,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Result:
    """What ``run(options)`` returns.

    Attributes:
        model: the trained ``keras.Model``.
        history: Keras's ``History`` of the fit (``history.history`` per epoch, ``history.steps`` per step).
        metrics: test metrics (and the last validation ones), plain numbers.
        baselines: the same metrics for the task's reference predictors on the same data.
        export: the export folder, or None with ``export=False``.
        run_dir: the run folder (history.csv, grad_norms.csv, TensorBoard, checkpoint, plots).
        options: the options that produced it.
        details: what else the task reports (its data, model config, samples, ...).
    """

    model: Any
    history: Any
    metrics: dict[str, Any]
    baselines: dict[str, Any]
    export: Path | None
    run_dir: Path
    options: TaskOptions
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- the command line


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps the description's line breaks."""


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _value_type(hint: Any) -> Any:
    """int for ``int`` and ``int | None`` alike."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def build_parser(options_cls: type[TaskOptions], prog: str, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of ``options_cls``, grouped as the fields say.

    Flags the user does not give are absent from the parsed namespace (``SUPPRESS``), so
    :func:`options_from_args` knows which values were given and lets them win over ``--quick``.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = typing.get_type_hints(options_cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(options_cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        kind = _value_type(hints[f.name])
        default = f.default
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if kind is bool:
            kwargs["action"] = "store_false" if default else "store_true"
            kwargs["help"] = meta["help"] if not default else f"do not {meta['help']}"
        else:
            shown = repr(default) if isinstance(default, str) else default
            # a help text that already says what happens by default ("default: ...") needs no "(default: None)"
            stated = default is None and "default" in meta["help"]
            kwargs.update(type=kind, help=meta["help"] if stated else f"{meta['help']} (default: {shown})")
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        group.add_argument(flag_of(f), **kwargs)
    groups["training"].add_argument(
        "--quick",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the quick preset: small data and 1 epoch, a smoke run in seconds (flags given explicitly win over it)",
    )
    if options_cls.PRESETS:
        groups["training"].add_argument(
            "--preset",
            choices=list(options_cls.PRESETS),
            default=argparse.SUPPRESS,
            help="a named recipe; flags given explicitly win over it (see the task's docs for what it sets)",
        )
    return parser


def options_from_args(options_cls: type[TaskOptions], args: argparse.Namespace) -> TaskOptions:
    given = vars(args).copy()
    quick, preset = given.pop("quick", False), given.pop("preset", None)
    if quick and preset:
        raise ConfigError("preset", preset, "left out when --quick is given", "Pass --quick or --preset, not both")
    if preset:
        return options_cls.preset(preset, **given)
    return options_cls.quick(**given) if quick else options_cls(**given)


def describe_error(exc: SeqzooError, options_cls: type[TaskOptions] | None) -> str:
    """The error in the command line's words: a field shows as its flag (``seq_len`` as ``--seq-len``)."""
    if not isinstance(exc, ConfigError):
        return str(exc)
    flags = {f.name: flag_of(f) for f in dataclasses.fields(options_cls)} if options_cls is not None else {}
    return exc.describe(flags.get(exc.field, "--" + exc.field.replace("_", "-")))


def in_flags(message: str, options_cls: type[TaskOptions] | None) -> str:
    """``message`` with the Python names of ``options_cls``'s fields written as their flags, for the
    command line (``ts_train`` as ``--ts-train``; ``text_file (--text-file)`` as ``--text-file``).

    A plain field name (model, csv, seed) is also an ordinary word, so it changes only where the
    message writes it with its flag (``csv (--csv)``). A name in a file name (``/data/ts_train.ts``)
    or a keyword (``run_name=``) is left as it is.
    """
    if options_cls is None:
        return message
    for f in dataclasses.fields(options_cls):
        if "help" in f.metadata:
            with_flag = rf"(?: \({re.escape(flag_of(f))}\))" + ("?" if "_" in f.name else "")
            pattern = rf"(?<![\w.-]){f.name}{with_flag}(?![\w=-])(?!\.\w)"
            message = re.sub(pattern, flag_of(f), message)
    return message


def main_for(
    options_cls: type[TaskOptions],
    run: Callable[[TaskOptions], Result],
    report: Callable[[Result], None],
    argv: Sequence[str] | None,
    prog: str,
    description: str = "",
) -> int:
    """A task's command: parse the flags into ``options_cls``, ``run``, ``report``. seqzoo's
    errors and missing or unreadable files become one line on stderr and exit status 2."""
    from tasks.terminal import quiet_tensorflow

    parser = build_parser(options_cls, prog, description)
    args = parser.parse_args(argv)
    quiet_tensorflow()  # after parsing: --help never imports TensorFlow
    work = lambda: report(run(options_from_args(options_cls, args)))  # noqa: E731
    return guarded(prog, work, options_cls, argv=sys.argv[1:] if argv is None else argv)


def guarded(
    prog: str,
    work: Callable[[], Any],
    options_cls: type[TaskOptions] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run ``work``; expected failures become one line and a non-zero exit, never a traceback.
    A run stopped by SIGTERM or Ctrl-C exits 143 / 130 with the command that resumes it
    (``argv``: the command's own arguments, after ``prog``)."""
    from zoo.preemption import Terminated, TrainingInterrupted, signals_end_the_command

    again = "run the same command again to continue from the last checkpoint"
    try:
        with signals_end_the_command():
            work()
        return 0
    except TrainingInterrupted as exc:
        resume = f"; resume with: {resume_command(prog, argv, exc.run_dir)}" if exc.run_dir and argv is not None else ""
        print(f"\n{prog}: {exc}{resume}", file=sys.stderr)
        return exc.exit_status
    except SeqzooError as exc:
        message = describe_error(exc, options_cls)
        print(f"{prog}: error: {in_flags(message, options_cls)}", file=sys.stderr)
        return 2
    except ValueError as exc:  # Keras's own argument errors
        print(f"{prog}: error: {in_flags(str(exc), options_cls)}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing or unreadable files, a full or read-only disk: the file and the reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{in_flags(str(exc.strerror or exc), options_cls)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"\n{prog}: stopped by SIGTERM; {again}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {again}", file=sys.stderr)
        return 130


def resume_command(prog: str, argv: Sequence[str], run_dir) -> str:
    """The command line that continues the run in ``run_dir``: the same one, naming the folder. A part
    of a run (a classifier's distillation teacher, ``<run>/teacher2``) is continued by its run's
    command, so the folder named is the nearest one holding the command's ``command.json``."""
    import shlex

    run_dir = Path(run_dir)
    run_dir = next((d for d in (run_dir, *run_dir.parents) if (d / "command.json").exists()), run_dir)

    argv = [a for a in argv if a != "--resume=never"]
    if "--resume" in argv and argv.index("--resume") + 1 < len(argv):  # 'never' would start the run again
        i = argv.index("--resume")
        del argv[i : i + 2]
    if not any(a == "--run-name" or a.startswith("--run-name=") for a in argv):
        argv += ["--run-name", Path(run_dir).name]
    return shlex.join([*prog.split(), *argv])
