"""XLA's compiled programs kept on disk from one command to the next, when asked for.

The fused recurrent loops and the sampler are compiled by XLA the first time a process
runs them with a given model and shape. TensorFlow can keep those programs in a folder
(``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR``), so that the next command with
the same model loads them instead of compiling again.

It is off unless ``SEQZOO_XLA_CACHE`` is set: ``1`` uses ``~/.cache/seqzoo/xla`` (under
``$XDG_CACHE_HOME`` when set), any other value names the folder. Off by default because
TensorFlow fails a compilation whose cache file cannot be written or read (a full disk
would stop training that needs no cache). Programs go into a subfolder per TensorFlow
version and machine, and before each command the oldest files beyond :data:`LIMIT_BYTES`
are deleted (never one written in the last hour, which another command may be reading).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

CACHE_ENV = "SEQZOO_XLA_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
LIMIT_BYTES = 256 * 2**20
KEEP_SECONDS = 3600  # files younger than this are never trimmed


def cache_dir() -> Path | None:
    """The folder asked for by ``SEQZOO_XLA_CACHE`` (None: off), one subfolder per TensorFlow
    version and machine, since programs compiled by one do not load in the other."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value in ("", "0"):
        return None
    if value == "1":
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = (Path(base) if base else Path.home() / ".cache") / "seqzoo" / "xla"
    else:
        root = Path(value).expanduser()
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return root / f"tf{version}-{platform.node() or 'host'}-{platform.machine() or 'cpu'}"


def trim(folder: Path, limit: int = LIMIT_BYTES, keep_seconds: float = KEEP_SECONDS) -> None:
    """Delete the oldest files beyond ``limit`` bytes, sparing those younger than ``keep_seconds``."""
    entries = []
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except OSError:  # removed by a command running beside this one
            continue
        if path.is_file():
            entries.append((stat.st_mtime, stat.st_size, path))
    total, young = 0, time.time() - keep_seconds
    for mtime, size, path in sorted(entries, reverse=True):  # newest first
        total += size
        if total > limit and mtime < young:
            path.unlink(missing_ok=True)


def enable() -> Path | None:
    """Point TensorFlow's XLA cache at :func:`cache_dir`; returns the folder, or None where it
    stays off (not asked for, TensorFlow already imported, the user's own ``TF_XLA_FLAGS``
    names a folder, or the folder cannot be used, which a line on stderr explains)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tensorflow" in sys.modules or FLAG in flags:
        return None  # TensorFlow reads the flags once, when it is imported
    try:
        folder = cache_dir()
        if folder is None:
            return None
        if any(c.isspace() for c in str(folder)):
            raise OSError("TF_XLA_FLAGS cannot carry a path with whitespace")
        folder.mkdir(parents=True, exist_ok=True)
        trim(folder)
        if not os.access(folder, os.W_OK):
            raise OSError("not writable")
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home folder to be found
        print(f"seqzoo: the XLA cache stays off ({CACHE_ENV}): {exc}", file=sys.stderr)
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={folder}".strip()
    return folder
