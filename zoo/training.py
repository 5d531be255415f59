"""The one compile + fit path that the CLI, the tuner, the studies and the tests use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import keras


def make_optimizer(
    learning_rate: float = 1e-3,
    *,
    clipnorm: float | None = None,
    global_clipnorm: float | None = None,
    clipvalue: float | None = None,
    optimizer: str = "adam",
) -> keras.optimizers.Optimizer:
    """An optimizer with Keras's clipping options (per-variable norm, global norm, value)."""
    if learning_rate is None or learning_rate <= 0:
        raise ValueError(f"Received learning_rate={learning_rate!r}, expected a positive float")
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError("Pass clipnorm (per variable) or global_clipnorm, not both")
    for name, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)):
        if value is not None and value <= 0:
            raise ValueError(f"Received {name}={value!r}, expected a positive float or None")
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    if optimizer not in classes:
        raise ValueError(f"Unknown optimizer {optimizer!r}; expected one of {', '.join(classes)}")
    return classes[optimizer](
        learning_rate=learning_rate, clipnorm=clipnorm, global_clipnorm=global_clipnorm, clipvalue=clipvalue
    )


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
) -> keras.callbacks.History:
    """``model.fit`` with the run's logs: CSV history and TensorBoard under ``run_dir``."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"Received epochs={epochs!r}, expected a positive integer")
    cbs = list(callbacks)
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cbs.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True))
        cbs.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    return model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=cbs,
        verbose=verbose,
        steps_per_epoch=steps_per_epoch,
        class_weight=class_weight,
    )
