"""A KerasTuner HyperModel over any seqzoo task module.

What the task fixes (its module, loaded data, its ``Options``: epochs, batch
size, data set, ...) goes into ``__init__`` and is validated there; what is
searched is drawn in ``build(hp)`` with explicit defaults; pins are registered
in advance as fixed hyperparameters (:meth:`SeqzooHyperModel.fixed_hyperparameters`).

Models are built by the task's ``build_model`` and compiled by its
``compile`` (-> ``zoo.training.compile_model``); trials train through
``zoo.training.fit``: the very path ``seqzoo train`` uses.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import keras
import keras_tuner as kt

from tasks.options import TaskOptions
from tuning.space import SearchSpace, clipnorm_value
from zoo import training
from zoo.config import ModelConfig
from zoo.errors import ConfigError

TASK_API = ("TASK", "OBJECTIVE", "Options", "load_data", "build_model", "compile")


def check_task_module(task: ModuleType) -> None:
    missing = [name for name in TASK_API if not hasattr(task, name)]
    if missing:
        raise ValueError(f"Task module {task.__name__} lacks {', '.join(missing)} of the task-module API")
    if not (isinstance(task.Options, type) and issubclass(task.Options, TaskOptions)):
        raise ValueError(f"Task module {task.__name__}: Options must subclass tasks.options.TaskOptions")


def task_module(task: str | ModuleType) -> ModuleType:
    """The task module for a ``seqzoo train`` task name (``tasks.TASKS``), a module path implementing the
    task API, or such a module itself."""
    from tasks import TASKS

    if isinstance(task, str):
        if task in TASKS:
            module = importlib.import_module(TASKS[task][0])
        else:
            try:
                module = importlib.import_module(task)
            except ImportError:
                raise ValueError(
                    f"Unknown task {task!r}; tasks: {', '.join(TASKS)} (or the import path of a "
                    "module implementing the task API)"
                ) from None
    else:
        module = task
    check_task_module(module)
    return module


def check_options(task: ModuleType, options: TaskOptions) -> None:
    """Refuse options a search cannot honour (before any data is loaded)."""
    if not isinstance(options, task.Options):
        raise TypeError(f"options must be {task.__name__}.Options, got {type(options).__name__}")
    if options.strategy != "none":
        # Trials are built and fit outside any tf.distribute scope, so a strategy would be silently
        # ignored; parallelism in a search comes from running trials in several processes.
        raise ConfigError(
            "strategy",
            options.strategy,
            "'none' in a search (each trial trains on one device)",
            "Data-parallel strategies are for seqzoo train; spread trials over processes with --workers N instead",
        )
    if options.lr_schedule != "constant":
        # A schedule callback would overwrite the learning rate each trial draws.
        raise ConfigError(
            "lr_schedule",
            options.lr_schedule,
            "'constant' in a search (each trial draws its own learning rate)",
            "Search with a constant rate, then train the best trial with seqzoo train ... --lr-schedule cosine",
        )


def depth_name(models: list[str]) -> str:
    """The depth hyperparameter of a group of models: ``num_layers`` drawn under ``model in models``.

    KerasTuner keeps one value per name, so each conditional scope needs its own name.
    """
    return "num_layers[" + ",".join(models) + "]"


class SeqzooHyperModel(kt.HyperModel):
    """Searches a task's zoo model (family, depth, width), clipnorm, learning rate and dropout.

    Args:
        task: a task module (``tasks.sequence_classification``, ...).
        data: ``task.load_data(options)``.
        options: the task's ``Options``; everything not searched comes from them (epochs per trial,
            batch size, the other model and training fields).
        space: the :class:`SearchSpace`.
        objective: ``keras_tuner.Objective`` the trials report.
    """

    def __init__(
        self,
        task: ModuleType,
        data: Any,
        options: TaskOptions,
        space: SearchSpace,
        objective: kt.Objective,
        *,
        verbose: int | str = "auto",
    ) -> None:
        super().__init__(name=f"seqzoo_{task.TASK}")
        check_task_module(task)
        check_options(task, options)
        if objective.direction not in ("min", "max"):
            raise ValueError(f"Objective direction must be 'min' or 'max', got {objective.direction!r}")
        self.task, self.data, self.options, self.space, self.objective = task, data, options, space, objective
        self.epochs = options.epochs
        self.verbose = verbose
        # draw() replaces model, depth, width and dropout together, so the task's own model only has to be
        # valid with its own depth (which Options checked).
        self.base_config = options.model_config()
        fixed = options.training_kwargs()
        fixed.pop("learning_rate")
        fixed.pop("clipnorm")
        if fixed.get("global_clipnorm") is not None and space.clipnorms != ("none",):
            raise ValueError(
                "--global-clipnorm cannot be combined with a clipnorm search (Keras takes one of the "
                "two); add --pin clipnorm=none or drop --global-clipnorm"
            )
        self.fixed_training = fixed  # global_clipnorm, clipvalue: the task's options, never searched

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
        model = self._draw(
            hp,
            "model",
            lambda: (
                hp.Fixed("model", s.models[0])
                if len(s.models) == 1
                else hp.Choice("model", list(s.models), default=s.models[0])
            ),
        )
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
        units = self._draw(
            hp,
            "units",
            lambda: (
                hp.Fixed("units", grid[0])
                if len(grid) == 1
                else hp.Int("units", grid[0], grid[-1], step=2, sampling="log", default=s.default("units"))
            ),
        )
        clip = self._draw(
            hp,
            "clipnorm",
            lambda: (
                hp.Fixed("clipnorm", s.clipnorms[0])
                if len(s.clipnorms) == 1
                else hp.Choice("clipnorm", list(s.clipnorms), default=s.default("clipnorm"))
            ),
        )
        lr = float(self._draw(hp, "learning_rate", lambda: self._float(hp, "learning_rate", sampling="log")))
        dropout = round(float(self._draw(hp, "dropout", lambda: self._float(hp, "dropout", step=0.1))), 6)
        config = self.base_config.replace(model=model, num_layers=int(depth), units=int(units), dropout=dropout)
        values = {
            "model": model,
            "num_layers": int(depth),
            "units": int(units),
            "clipnorm": clip,
            "learning_rate": lr,
            "dropout": dropout,
        }
        return config, {"learning_rate": lr, "clipnorm": clipnorm_value(clip), **self.fixed_training}, values

    def _float(self, hp: kt.HyperParameters, name: str, **kwargs) -> float:
        low, high = self.space.ranges[name]
        if low == high:
            return hp.Fixed(name, float(low))
        return hp.Float(name, float(low), float(high), default=self.space.default(name), **kwargs)

    # -------------------------------------------------------------------------------- build / fit

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config, compile_kwargs, _ = self.draw(hp)
        model = self.task.compile(self.task.build_model(config, self.data), self.data, **compile_kwargs)
        # Built now, the optimizer has its moments when KerasTuner loads a checkpoint into this model
        # (Hyperband continuing a trial, the best trial's export), so they are restored, not skipped.
        model.optimizer.build(model.trainable_variables)
        return model

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
        history = training.fit(
            model,
            self.data.train,
            self.data.val,
            epochs=epochs,
            callbacks=kwargs.pop("callbacks", []),
            verbose=kwargs.pop("verbose", self.verbose),
            **extra,
        )
        if self.objective.name not in history.history:
            raise kt.errors.FatalValueError(
                f"Objective {self.objective.name!r} was not logged by task {self.task.TASK!r}; "
                f"fit logged: {', '.join(sorted(history.history))}. Pick one of those with --objective"
            )
        return history

    def fit_options(self) -> dict[str, Any]:
        """Extra ``zoo.training.fit`` keywords: ``options.fit_kwargs()`` (``bptt``), or the task's own
        ``fit_options(options, data)`` when it has one.

        Trials keep no run folder, so no resume, checkpoint or gradient-norm log (KerasTuner keeps the
        best epoch's weights and its own resume).
        """
        trial: dict[str, Any] = {"resume": False, "checkpoint": False, "monitor": False}
        task = self.task.fit_options(self.options, self.data) if hasattr(self.task, "fit_options") else {}
        return {**self.options.fit_kwargs(), **task, **trial}

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
