"""Versioned, atomic exports: ``saved_models/<task>/<model>/<version>/``.

Each version folder is a TensorFlow SavedModel (the TF Serving layout: integer
versions under the model's folder) with two files beside it: ``model.keras``
(for fine-tuning with seqzoo) and ``card.json`` (what was trained, on what,
how well, with which versions). The SavedModel serves without seqzoo's code.

A version is written to a temporary folder and renamed into place, so a
reader never sees half an export, and an existing version is never replaced.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import zoo
from zoo import ModelConfig

ENV_VAR = "SEQZOO_SAVED_MODELS"
CARD = "card.json"
KERAS_FILE = "model.keras"
Endpoint = tuple[Callable, Sequence[tf.TensorSpec]]


def saved_models_root(value: str | os.PathLike | None = None) -> Path:
    """``--saved-models`` if given, else ``$SEQZOO_SAVED_MODELS``, else ``./saved_models``."""
    return Path(value or os.environ.get(ENV_VAR) or "saved_models")


def _numbered(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def versions(root: str | os.PathLike, task: str, model: str) -> list[int]:
    """Existing integer versions of ``task/model`` under ``root``, ascending."""
    return _numbered(Path(root) / task / model)


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
    """
    parent = saved_models_root(root) / task / config.model
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for resource in track:
            archive.track(resource)
        endpoints = dict(endpoints or _default_endpoints(model))
        for name, (fn, signature) in endpoints.items():
            archive.add_endpoint(name, fn, input_signature=list(signature))
        export_dir = tmp / "v"
        archive.write_out(str(export_dir), verbose=False)
        model.save(export_dir / KERAS_FILE)
        for name, content in (files or {}).items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(export_dir / name, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
                fh.write(content)
        version = (_numbered(parent) or [0])[-1] + 1
        full_card = {
            "task": task,
            "model": config.model,
            "config": config.to_dict(),
            "params": int(model.count_params()),
            "signatures": list(endpoints),
            **dict(card or {}),
            "versions": {
                "seqzoo": zoo.__version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "python": platform.python_version(),
            },
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        while True:
            full_card["version"] = version
            (export_dir / CARD).write_text(json.dumps(full_card, indent=2, default=_jsonable) + "\n")
            target = parent / str(version)
            try:
                # rename() refuses an existing non-empty folder: nothing is overwritten.
                os.rename(export_dir, target)
                return target
            except OSError:
                if not target.exists():
                    raise
                version += 1  # another writer took this version first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"card value of type {type(value).__name__} is not JSON serializable")


def resolve_export(path: str | os.PathLike) -> Path:
    """An export folder from a version folder or a model folder (its latest version)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No export at {path}: the path does not exist")
    if (path / CARD).is_file():
        return path
    for v in reversed(_numbered(path)):
        if (path / str(v) / CARD).is_file():
            return path / str(v)
    raise ValueError(
        f"{path} is not a seqzoo export: expected a folder with {CARD} "
        f"(saved_models/<task>/<model>/<version>/) or a model folder holding versions"
    )


def load_card(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads((resolve_export(path) / CARD).read_text())


# The modules that register the classes a ``model.keras`` may name: zoo layers, optimizers and
# the SeqModel itself, the tasks' input layers, losses and metrics.
REGISTERING_MODULES = (
    "zoo.layers",
    "zoo.optimizers",
    "zoo.train_step",
    "tasks.sequence_classification.layers",
    "tasks.movement.features",
    "tasks.movement.evaluate",
    "tasks.text_generation",
)


def load_keras(path: str | os.PathLike) -> keras.Model:
    """The export's ``model.keras``, with every class seqzoo saves registered first."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)
    return keras.saving.load_model(resolve_export(path) / KERAS_FILE)
