"""Writing a run's files safely: atomic writes that fail in one clear line, a writability probe
for the folders a command will need, and one writing process per run folder.

Every file seqzoo writes into a run folder or an export goes through a temporary name in the
same folder and :func:`os.replace`, so a reader (or a resume) sees the old file or the new one,
never half of one; when the disk is full or read-only the temporary file is removed and the
error names the file and the system's reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from zoo.errors import ConfigError, FileProblem

LOCK_FILE = ".lock"
# What to do about a damaged or foreign run folder, in both vocabularies.
START_FRESH = (
    "Delete the run folder or start a fresh run (resume=False in zoo.training.fit, "
    "resume='never' in a task's Options, --resume never on the command line)"
)
KEPT = "The last good checkpoint is kept; free space and run the command again to resume"


def reason(exc: OSError) -> str:
    """The system's words for an I/O error: 'No space left on device'."""
    return exc.strerror or str(exc)


def write_failed(path: str | os.PathLike, exc: OSError, fix: str = "") -> FileProblem:
    fix = fix or "Free space or fix the folder's permissions and run the command again"
    return FileProblem(path, f"could not be written ({reason(exc)})", fix)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fix: str = "") -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp``; on success it becomes ``p`` in one rename.
    An ``OSError`` removes ``tmp`` and becomes a :class:`FileProblem` naming ``p``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failed(path, exc, fix) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str, fix: str = "") -> None:
    with atomic_path(path, fix) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes, fix: str = "") -> None:
    with atomic_path(path, fix) as tmp:
        tmp.write_bytes(data)


def probe_writable(folder: str | os.PathLike, field: str, what: str) -> Path:
    """Create ``folder`` and write a byte into it, so a read-only, unwritable or full location fails
    now, in one line naming ``field`` (the Options field; the command line shows its flag), instead
    of after the training."""
    folder = Path(folder)
    probe = folder / f".seqzoo-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0")
    except OSError as exc:
        raise ConfigError(
            field, str(folder), f"a folder seqzoo can write {what} into", f"{reason(exc)}; choose another folder"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


class FolderBusy(FileProblem):
    """Another process holds the folder's lock."""


_held: dict[Path, int] = {}  # folder -> open file descriptor holding its lock, in this process


def lock_folder(folder: str | os.PathLike, fix: str) -> None:
    """Hold an exclusive lock on ``folder`` until :func:`unlock_folder` or the process ends.

    A second process asking for it gets :class:`FolderBusy` naming the folder and the holder's
    process id; the same process may ask again. The operating system drops the lock of a process
    that died, so a stale lock file is taken over (with a note)."""
    folder = Path(folder).resolve()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise write_failed(path, exc) from None
        raise FolderBusy(
            folder, f"another seqzoo process (pid {holder or 'unknown'}) is working in this folder", fix
        ) from None
    previous = _read_pid(fd)
    if previous and previous != os.getpid() and _alive(previous) is False:
        print(f"note: {folder} was left locked by process {previous}, which has ended; taking it over", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[folder] = fd


def unlock_folder(folder: str | os.PathLike) -> None:
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, fix: str) -> Iterator[Path]:
    """``with locked_folder(f, fix):`` -- the lock for the block, unless the caller already held it."""
    held = Path(folder).resolve() in _held
    lock_folder(folder, fix)
    try:
        yield Path(folder)
    finally:
        if not held:
            unlock_folder(folder)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------- a run's status: run.json


def read_json(path: Path, what: str) -> dict:
    """A JSON object seqzoo wrote into a run folder; a damaged one is a :class:`FileProblem` that
    names the file (``what`` it holds) and how to start fresh."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileProblem(path, f"the {what} is damaged ({exc})", START_FRESH) from None
    if not isinstance(data, dict):
        raise FileProblem(path, f"the {what} is damaged (not a JSON object)", START_FRESH)
    return data


def status(run_dir: Path) -> dict:
    """The run's ``run.json`` ({} when there is none)."""
    path = Path(run_dir) / "run.json"
    return read_json(path, "run status") if path.exists() else {}


def set_status(run_dir: Path, **fields) -> None:
    path = Path(run_dir) / "run.json"
    write_text(path, json.dumps({**status(run_dir), **fields}, indent=2), KEPT)


__all__ = [
    "FolderBusy",
    "atomic_path",
    "lock_folder",
    "locked_folder",
    "probe_writable",
    "unlock_folder",
    "write_bytes",
    "write_failed",
    "write_text",
]
