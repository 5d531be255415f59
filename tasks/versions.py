"""The export root's layout, without TensorFlow: ``saved_models/<task>/<model>/<version>/``.

Integer versions under a model's folder (the TF Serving layout), each holding a SavedModel,
``model.keras`` and ``card.json``. This module finds versions and reads cards, and
publishes the export a run folder keeps (``RUN_DIR/export/``, written by
:func:`tasks.export.export`) as the next version: ``seqzoo export RUN_DIR``. A version is
assembled in a temporary folder and renamed into place, so a reader never sees half an
export, and an existing version is never replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo import files
from zoo.errors import FileProblem
from zoo.files import reason

ENV_VAR = "SEQZOO_SAVED_MODELS"
CARD = "card.json"
KERAS_FILE = "model.keras"
STAGED = "export"  # the run folder's copy of its export


def saved_models_root(value: str | os.PathLike | None = None) -> Path:
    """``--saved-models`` if given, else ``$SEQZOO_SAVED_MODELS``, else ``./saved_models``."""
    return Path(value or os.environ.get(ENV_VAR) or "saved_models")


def numbered(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def versions(root: str | os.PathLike, task: str, model: str) -> list[int]:
    """Existing integer versions of ``task/model`` under ``root``, ascending."""
    return numbered(Path(root) / task / model)


def publish(run_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Copy the export kept in ``run_dir/export/`` to the next version under ``root`` (default:
    :func:`saved_models_root`) and return its folder: ``seqzoo export RUN_DIR``."""
    staged = Path(run_dir) / STAGED
    if not Path(run_dir).is_dir():
        raise FileProblem(run_dir, "no such run folder", "Pass a folder under runs/<task>/<model>/")
    if not (staged / CARD).is_file():
        raise FileProblem(
            staged,
            "this run folder holds no export",
            "Exports are kept in the run folder of runs trained with export on (the default; not --no-export); "
            "train again to export",
        )
    card = load_card(staged)
    parent = saved_models_root(root) / card["task"] / card["model"]
    target = new_version(parent, lambda folder: _link_tree(staged, folder), run_dir)
    if files.status(run_dir).get("status") == "trained":  # its export failed before: now the run is done
        files.set_status(run_dir, status="finished")
    return target


def new_version(parent: Path, fill: Callable[[Path], None], run_dir=None) -> Path:
    """The next free integer version under ``parent``, its content written by ``fill(folder)`` into a
    temporary folder there and renamed into place; an ``OSError`` becomes one :class:`FileProblem`
    (naming ``seqzoo export RUN_DIR`` when the export is kept in ``run_dir``) and leaves nothing."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    except OSError as exc:
        raise _publish_failed(parent, exc, run_dir) from None
    try:
        fill(tmp / "v")
        return _claim_version(tmp / "v", parent)
    except OSError as exc:
        raise _publish_failed(parent, exc, run_dir) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _claim_version(folder: Path, parent: Path) -> Path:
    """Rename ``folder`` to the next free integer version under ``parent``, writing it into the card."""
    card = json.loads((folder / CARD).read_text())
    version = (numbered(parent) or [0])[-1] + 1
    while True:
        card["version"] = version
        (folder / CARD).write_text(json.dumps(card, indent=2, default=jsonable) + "\n")
        target = parent / str(version)
        try:
            # rename() refuses an existing non-empty folder: nothing is overwritten.
            os.rename(folder, target)
            return target
        except OSError:
            if not target.exists():
                raise
            version += 1  # another writer took this version first


def _link_tree(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target`` as hard links where both share a disk (no second copy),
    else as copies; the card is always copied, since it is rewritten with its version. The first
    failure is raised as it is (shutil.copytree would gather them into one message)."""
    target.mkdir()
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir()
        elif path.name == CARD and path.parent == source:
            shutil.copy2(path, dest)
        else:
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)


def _publish_failed(parent: Path, exc: OSError, run_dir) -> FileProblem:
    if run_dir is None:
        fix = "Free space or choose another export folder (saved_models= in Options, --saved-models)"
    else:
        fix = (
            "Nothing is lost: the export is kept in the run folder. Free space or choose another folder, then run: "
            f"seqzoo export {run_dir} [--saved-models DIR]"
        )
    return FileProblem(parent, f"the export could not be written ({reason(exc)})", fix)


def jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"card value of type {type(value).__name__} is not JSON serializable")


def resolve_export(path: str | os.PathLike) -> Path:
    """An export folder from a version folder or a model folder (its latest version)."""
    path = Path(path)
    if not path.exists():
        raise FileProblem(path, "no export here: the path does not exist", "Pass saved_models/<task>/<model>/<version>")
    if (path / CARD).is_file():
        return path
    for v in reversed(numbered(path)):
        if (path / str(v) / CARD).is_file():
            return path / str(v)
    raise FileProblem(
        path,
        f"not a seqzoo export: there is no {CARD} here nor in a numbered version folder below",
        "Pass saved_models/<task>/<model>/<version> or its model folder",
    )


REEXPORT = "The export is damaged or was not written by seqzoo: export the model again (seqzoo export RUN_DIR)"


def load_card(path: str | os.PathLike) -> dict[str, Any]:
    card_path = resolve_export(path) / CARD
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileProblem(card_path, f"the card is not valid JSON ({exc})", REEXPORT) from None
    if not isinstance(card, dict) or not isinstance(card.get("task"), str) or not isinstance(card.get("model"), str):
        raise FileProblem(card_path, "the card does not name its task and model", REEXPORT)
    return card


def export_file(folder: str | os.PathLike, name: str) -> Path:
    """The file ``name`` (from a card) inside the export ``folder``; a name that leads outside it is refused."""
    folder = Path(folder).resolve()
    path = (folder / str(name)).resolve()
    if not path.is_relative_to(folder):
        raise FileProblem(folder / CARD, f"the card names the file {name!r}, which lies outside the export", REEXPORT)
    if not path.is_file():
        raise FileProblem(path, "the export is incomplete: this file is missing", REEXPORT)
    return path
