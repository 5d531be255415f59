"""Finished runs of a study, kept as they finish, so a killed study resumes where it stopped.

Each run (one arm, one seed, one learning rate, ...) is identified by a key of plain values
and appended to ``runs.jsonl`` in the study's folder as soon as it finishes (one JSON line,
flushed and fsynced). Starting the study again skips every key already there. A line cut
short by a kill is ignored; settings that differ give other keys, so a changed study never
reuses a stale run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILE = "runs.jsonl"


def _key(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


class RunStore:
    """The finished runs under ``folder/runs.jsonl``."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / FILE
        self.runs: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run
                    continue
                self.runs[_key(record["key"])] = record["result"]

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.runs.get(_key(key))

    def put(self, key: dict[str, Any], result: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "result": result}, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.runs[_key(key)] = result

    def run(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stored result of ``key``, or ``work()``'s, stored before it is returned."""
        done = self.get(key)
        if done is not None:
            return done
        result = work()
        self.put(key, result)
        return result

    def __len__(self) -> int:
        return len(self.runs)
