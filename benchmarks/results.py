"""Shared by the benchmark scripts: machine facts and ``RESULTS.md`` sections."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """One line: CPU model, cores, Python, TensorFlow/Keras (and torch if imported) versions, date."""
    import sys

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [f"Python {platform.python_version()}"]
    for mod in ("tensorflow", "keras", "torch"):
        if mod in sys.modules:
            versions.append(f"{mod} {sys.modules[mod].__version__}")
    date = _dt.date.today().isoformat()
    return f"{cpu}, {os.cpu_count()} cores; {', '.join(versions)}; {date}"


def write_section(key: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the text between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
