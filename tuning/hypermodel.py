"""A KerasTuner HyperModel over any seqzoo task module.

What the task fixes (its module, loaded data, its own flags: epochs, batch
size, data set, ...) goes into ``__init__`` and is validated there; what is
searched is drawn in ``build(hp)`` with explicit defaults; pins are registered
in advance as fixed hyperparameters (:meth:`SeqzooHyperModel.fixed_hyperparameters`).

Models are built by the task's ``build_model`` and compiled by its
``compile`` (-> ``zoo.training.compile_model``); trials train through
``zoo.training.fit``: the very path ``seqzoo train`` uses.
"""

from __future__ import annotations

import argparse
import inspect
from types import ModuleType
from typing import Any

import keras
import keras_tuner as kt

from tasks.common import config_from_args, training_kwargs
from tuning.space import SearchSpace, clipnorm_value
from zoo import training
from zoo.config import ModelConfig

TASK_API = ("TASK", "OBJECTIVE", "build_parser", "load_data", "build_model", "compile")


def check_task_module(task: ModuleType) -> None:
    missing = [name for name in TASK_API if not hasattr(task, name)]
    if missing:
        raise ValueError(f"Task module {task.__name__} lacks {', '.join(missing)} of the task-module API")


def task_epochs(args: argparse.Namespace) -> int:
    """Epochs per trial: the task's ``--epochs``, or 1 with ``--quick`` (as ``seqzoo train``)."""
    epochs = 1 if getattr(args, "quick", False) else args.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"Received --epochs {epochs!r}, expected a positive integer")
    return epochs


def depth_name(models: list[str]) -> str:
    """The depth hyperparameter of a group of models: ``num_layers`` drawn under ``model in models``.

    KerasTuner keeps one value per name, so each conditional scope needs its own name.
    """
    return "num_layers[" + ",".join(models) + "]"


class SeqzooHyperModel(kt.HyperModel):
    """Searches a task's zoo model (family, depth, width), clipnorm, learning rate and dropout.

    Args:
        task: a task module (``tasks.sequence_classification``, ...).
        data: ``task.load_data(args)``.
        args: the task's parsed flags (everything not searched comes from them).
        space: the :class:`SearchSpace`.
        objective: ``keras_tuner.Objective`` the trials report.
    """

    def __init__(self, task: ModuleType, data: Any, args: argparse.Namespace, space: SearchSpace,
                 objective: kt.Objective, *, verbose: int | str = "auto") -> None:
        super().__init__(name=f"seqzoo_{task.TASK}")
        check_task_module(task)
        if objective.direction not in ("min", "max"):
            raise ValueError(f"Objective direction must be 'min' or 'max', got {objective.direction!r}")
        self.task, self.data, self.args, self.space, self.objective = task, data, args, space, objective
        self.epochs = task_epochs(args)
        self.verbose = verbose
        self.base_config = config_from_args(args, return_sequences=False).replace(model=space.models[0])
        fixed = training_kwargs(args)
        fixed.pop("learning_rate")
        fixed.pop("clipnorm")
        if fixed.get("global_clipnorm") is not None and space.clipnorms != ("none",):
            raise ValueError("--global-clipnorm cannot be combined with a clipnorm search (Keras takes one of the "
                             "two); add --pin clipnorm=none or drop --global-clipnorm")
        self.fixed_training = fixed  # global_clipnorm, clipvalue: the task's flags, never searched

    # -------------------------------------------------------------------------------- space

    def fixed_hyperparameters(self) -> kt.HyperParameters:
        """The user's pins, registered in advance as ``Fixed`` hyperparameters."""
        hp = kt.HyperParameters()
        for name, value in self.space.pins.items():
            hp.Fixed(name, value)
        return hp

    def _draw(self, hp: kt.HyperParameters, name: str, searched) -> Any:
        if name in self.space.pins:
            return hp.Fixed(name, self.space.pins[name])
        return searched()

    def draw(self, hp: kt.HyperParameters) -> tuple[ModelConfig, dict[str, Any], dict[str, Any]]:
        """(body config, compile keywords, the six searched values) for this trial's hyperparameters."""
        s = self.space
        model = self._draw(hp, "model", lambda: hp.Fixed("model", s.models[0]) if len(s.models) == 1
                           else hp.Choice("model", list(s.models), default=s.models[0]))
        if "num_layers" in s.pins:
            depth = hp.Fixed("num_layers", s.pins["num_layers"])
        else:
            depth = None
            for (low, high), models in s.depth_groups().items():
                if low == high:  # e.g. lstm: one layer, nothing to search
                    depth = low if model in models else depth
                    continue
                with hp.conditional_scope("model", models):  # one depth per group of equal depth ranges
                    value = hp.Int(depth_name(models), low, high, default=low)
                if model in models:
                    depth = value
        grid = s.units_grid()
        units = self._draw(hp, "units", lambda: hp.Fixed("units", grid[0]) if len(grid) == 1 else hp.Int(
            "units", grid[0], grid[-1], step=2, sampling="log", default=s.default("units")))
        clip = self._draw(hp, "clipnorm", lambda: hp.Fixed("clipnorm", s.clipnorms[0]) if len(s.clipnorms) == 1
                          else hp.Choice("clipnorm", list(s.clipnorms), default=s.default("clipnorm")))
        lr = float(self._draw(hp, "learning_rate", lambda: self._float(hp, "learning_rate", sampling="log")))
        dropout = round(float(self._draw(hp, "dropout", lambda: self._float(hp, "dropout", step=0.1))), 6)
        config = self.base_config.replace(model=model, num_layers=int(depth), units=int(units), dropout=dropout)
        values = {"model": model, "num_layers": int(depth), "units": int(units), "clipnorm": clip,
                  "learning_rate": lr, "dropout": dropout}
        return config, {"learning_rate": lr, "clipnorm": clipnorm_value(clip), **self.fixed_training}, values

    def _float(self, hp: kt.HyperParameters, name: str, **kwargs) -> float:
        low, high = self.space.ranges[name]
        if low == high:
            return hp.Fixed(name, float(low))
        return hp.Float(name, float(low), float(high), default=self.space.default(name), **kwargs)

    # -------------------------------------------------------------------------------- build / fit

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config, compile_kwargs, _ = self.draw(hp)
        model = self.task.build_model(config, self.data)
        return self.task.compile(model, self.data, **compile_kwargs)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, **kwargs) -> keras.callbacks.History:
        """``zoo.training.fit`` on the task's splits with the tuner's callbacks (and Hyperband's epochs)."""
        epochs = int(kwargs.pop("epochs", self.epochs))
        initial_epoch = int(kwargs.pop("initial_epoch", 0))
        accepted = inspect.signature(training.fit).parameters
        extra = {k: v for k, v in self.fit_options().items() if k in accepted}
        if "initial_epoch" in accepted:
            extra["initial_epoch"] = initial_epoch
        else:  # Hyperband resumes a model at initial_epoch: train the remaining epochs
            epochs = max(1, epochs - initial_epoch)
        history = training.fit(model, self.data.train, self.data.val, epochs=epochs,
                               callbacks=kwargs.pop("callbacks", []), verbose=kwargs.pop("verbose", self.verbose),
                               **extra)
        if self.objective.name not in history.history:
            raise kt.errors.FatalValueError(
                f"Objective {self.objective.name!r} was not logged by task {self.task.TASK!r}; "
                f"fit logged: {', '.join(sorted(history.history))}. Pick one of those with --objective"
            )
        return history

    def fit_options(self) -> dict[str, Any]:
        """Extra ``zoo.training.fit`` keywords: the task's flags (``--bptt``) or its ``fit_options(args, data)``.

        Trials keep no run folder, so no resume, checkpoint or gradient-norm log (KerasTuner keeps the
        best epoch's weights and its own resume).
        """
        options: dict[str, Any] = {"resume": False, "checkpoint": False, "monitor": False}
        if hasattr(self.task, "fit_options"):
            return {**options, **self.task.fit_options(self.args, self.data)}
        try:
            from tasks.common import fit_kwargs
        except ImportError:
            return options
        return {**fit_kwargs(self.args), **options}

    def logged_metrics(self) -> list[str]:
        """Names ``fit`` logs for this task (probe: the default model evaluated on one batch)."""
        hp = self.fixed_hyperparameters()
        model = self.build(hp)
        data = self.data.val if self.data.val is not None else self.data.train
        names = list(model.evaluate(data.take(1), verbose=0, return_dict=True))
        keras.backend.clear_session()
        return names + ([f"val_{n}" for n in names] if self.data.val is not None else [])

    def check_objective(self) -> None:
        """Refuse an objective the task does not log (the task's own OBJECTIVE is trusted)."""
        if self.objective.name == self.task.OBJECTIVE[0]:
            return
        logged = self.logged_metrics()
        if self.objective.name not in logged:
            raise ValueError(
                f"Objective {self.objective.name!r} is not logged by task {self.task.TASK!r}; "
                f"it logs: {', '.join(logged)} (default: {self.task.OBJECTIVE[0]})"
            )
