"""XLA's compiled programs kept on disk from one command to the next.

The fused recurrent loops and the sampler are compiled by XLA the first time a process
runs them with a given model and shape. TensorFlow can keep those programs in a folder
(``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR``), so the next command with the
same model loads them instead of compiling again. Commands use ``~/.cache/seqzoo/xla``
(under ``$XDG_CACHE_HOME`` when set); ``SEQZOO_XLA_CACHE=DIR`` names another folder and
``SEQZOO_XLA_CACHE=0`` turns the cache off. Before each command the folder is trimmed to
its newest :data:`LIMIT_BYTES`, so it cannot grow without bound. A folder that cannot be
written leaves compilation as it was.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "SEQZOO_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
LIMIT_BYTES = 256 * 2**20


def cache_dir() -> Path | None:
    """The folder for compiled programs, or None when ``SEQZOO_XLA_CACHE=0``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value == "0":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "seqzoo" / "xla"


def trim(folder: Path, limit: int = LIMIT_BYTES) -> None:
    """Delete the oldest files until the folder holds at most ``limit`` bytes."""
    entries = []
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except OSError:  # removed by a command running beside this one
            continue
        if path.is_file():
            entries.append((stat.st_mtime, stat.st_size, path))
    total = 0
    for _, size, path in sorted(entries, reverse=True):  # newest first
        total += size
        if total > limit:
            path.unlink(missing_ok=True)


def enable() -> Path | None:
    """Point TensorFlow's XLA cache at :func:`cache_dir`; returns the folder, or None where the
    cache stays off (TensorFlow already imported, the user's own ``TF_XLA_FLAGS`` names a
    folder, ``SEQZOO_XLA_CACHE=0``, or the folder cannot be written)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    folder = cache_dir()
    if "tensorflow" in sys.modules or FLAG in flags or folder is None:
        return None  # TensorFlow reads the flags once, when it is imported
    try:
        folder.mkdir(parents=True, exist_ok=True)
        trim(folder)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    return folder
