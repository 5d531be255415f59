"""seqzoo's exceptions: each names what is wrong, the value received and the way out.

Every class is also a ``ValueError`` (or ``OSError``-free ``ValueError``), so code that
catches Keras-style ``ValueError`` keeps working. The command line turns any
:class:`SeqzooError` into one line on stderr and exit status 2; a Python caller gets
the exception with its fields.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


class SeqzooError(ValueError):
    """Base class of seqzoo's expected failures (bad settings, bad files, diverged runs)."""


class ConfigError(SeqzooError):
    """A setting has a bad value. ``field`` is the Python name (``seq_len``); the command line
    shows it as its flag (``--seq-len``)."""

    def __init__(self, field: str, value: Any, expected: str, hint: str = ""):
        self.field, self.value, self.expected, self.hint = field, value, expected, hint
        super().__init__(self.describe(field))

    def describe(self, name: str) -> str:
        """The message with ``name`` standing for the setting (a field or a flag)."""
        return f"{name} must be {self.expected}, got {self.value!r}" + (f". {self.hint}" if self.hint else "")


class FileProblem(SeqzooError):
    """A file seqzoo reads or writes is missing, unreadable or damaged; the message names the
    file and what to do."""

    def __init__(self, path: str | PathLike, problem: str, fix: str):
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{self.path}: {problem}. {fix}")


__all__ = ["ConfigError", "FileProblem", "SeqzooError"]
