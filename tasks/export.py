"""Writing and loading exports: ``saved_models/<task>/<model>/<version>/``.

Each version folder is a TensorFlow SavedModel with two files beside it: ``model.keras``
(for fine-tuning with seqzoo) and ``card.json`` (what was trained, on what, how well,
with which versions). The SavedModel serves without seqzoo's code. The folder layout,
cards and publishing a version live in :mod:`tasks.versions` (no TensorFlow there).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import zoo
from tasks.versions import (  # noqa: F401 -- part of this module's API: callers read cards through it
    CARD,
    ENV_VAR,
    KERAS_FILE,
    REEXPORT,
    STAGED,
    export_file,
    jsonable,
    load_card,
    new_version,
    publish,
    resolve_export,
    saved_models_root,
    versions,
)
from zoo import ModelConfig
from zoo.errors import FileProblem
from zoo.files import reason

Endpoint = tuple[Callable, Sequence[tf.TensorSpec]]


def _default_endpoints(model: keras.Model) -> dict[str, Endpoint]:
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
    if len(specs) == 1:
        return {"serve": (lambda x: model(x, training=False), specs)}
    return {"serve": (lambda *xs: model(list(xs), training=False), specs)}


def export(
    model: keras.Model,
    *,
    task: str,
    config: ModelConfig,
    root: str | os.PathLike | None = None,
    endpoints: Mapping[str, Endpoint] | None = None,
    track: Sequence[Any] = (),
    card: Mapping[str, Any] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    run_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the next version of ``task/config.model`` and return its folder.

    Args:
        model: the trained model; saved as ``model.keras`` and tracked.
        task: task name (first folder level).
        config: the body's config; stored in the card, enough to rebuild it.
        root: export root (see :func:`saved_models_root`).
        endpoints: ``{name: (fn, input_signature)}``; the first is also
            ``serving_default``. Default: ``serve`` = the model's forward pass.
        track: further Keras layers/models the endpoints use (lookup tables,
            a step model), so their variables are saved.
        card: task-specific card fields: ``data`` (provenance), ``metrics``,
            ``hyperparameters``, anything the task needs to serve.
        files: extra files written beside the card (e.g. ``vocab.txt``).
        run_dir: the run folder. The export is first written complete into
            ``run_dir/export/`` and kept there, then copied under ``root``; when
            that copy fails (a full or read-only disk), :func:`publish` (``seqzoo
            export RUN_DIR``) redoes it later without retraining.
    """
    parent = saved_models_root(root) / task / config.model
    content = dict(
        model=model, task=task, config=config, endpoints=endpoints, track=track, card=card or {}, files=files or {}
    )
    if run_dir is not None:
        stage(Path(run_dir), **content)
        return publish(run_dir, root)
    return new_version(parent, lambda folder: _write(folder, **content))


def stage(run_dir: Path, **content) -> Path:
    """Write the export into ``run_dir/export/`` (replacing an earlier one there), complete or not at all."""
    target = Path(run_dir) / STAGED
    tmp = target.with_name(f".{STAGED}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        _write(tmp, **content)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except OSError as exc:
        raise FileProblem(
            target,
            f"the export could not be written into the run folder ({reason(exc)})",
            "The trained model is in the run's checkpoint: free space and run the same command again; "
            "it resumes after training and exports",
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write(folder: Path, *, model, task, config, endpoints, track, card, files) -> None:
    """The export's content in ``folder``: SavedModel, ``model.keras``, extra files, the card (no version yet)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in track:
        archive.track(resource)
    endpoints = dict(endpoints or _default_endpoints(model))
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=list(signature))
    archive.write_out(str(folder), verbose=False)
    model.save(folder / KERAS_FILE)
    for name, content in files.items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(folder / name, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(content)
    full_card = {
        "task": task,
        "model": config.model,
        "config": config.to_dict(),
        "params": int(model.count_params()),
        "signatures": list(endpoints),
        **dict(card),
        "versions": {
            "seqzoo": zoo.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / CARD).write_text(json.dumps(full_card, indent=2, default=jsonable) + "\n")


# The modules that register the classes a ``model.keras`` may name: zoo layers, optimizers and
# the SeqModel itself, the tasks' input layers, losses and metrics.
REGISTERING_MODULES = (
    "zoo.layers",
    "zoo.optimizers",
    "zoo.train_step",
    "tasks.sequence_classification.layers",
    "tasks.sequence_classification.distill",
    "tasks.movement.features",
    "tasks.movement.evaluate",
    "tasks.text_generation",
)


def load_keras(path: str | os.PathLike) -> keras.Model:
    """The export's ``model.keras``, with every class seqzoo saves registered first.

    Keras's safe mode stays on: a file that would run code when loaded (a ``Lambda`` layer) is
    refused, like one that names a class or function seqzoo does not know, a truncated archive or
    a damaged config -- each as a :class:`FileProblem` naming the file."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)
    file = resolve_export(path) / KERAS_FILE
    if not file.is_file():
        raise FileProblem(file, "the export is incomplete: this file is missing", REEXPORT)
    try:
        return keras.saving.load_model(file, safe_mode=True)
    except (ValueError, TypeError, KeyError, AttributeError, OSError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileProblem(file, f"cannot be loaded: {first}", REEXPORT) from None
