"""The progress line ``fit`` prints: one line, never wider than the terminal.

``12/40 ━━━━━━━━━━━━──────── ETA 3s loss 2.169  acc 0.186  gnorm 1.69  lr 0.002``; at the end
of an epoch the validation numbers join it. Names are shortened (``accuracy`` shows as
``acc``); what does not fit goes, least important first: the bar shrinks and then disappears,
then fields by rank (see :func:`render`). The full numbers are in the run folder's CSV files.
"""

from __future__ import annotations

import math
import shutil
import sys
import time

BAR_WIDTH = 20
SECONDS_RANK = 5.5  # the elapsed time or ETA goes after extra metrics, before the learning rate
Field = tuple[str, float, float]  # (name, value, rank): a higher rank leaves a full line first
SHORT_NAMES = {
    "accuracy": "acc",
    "balanced_accuracy": "bal_acc",
    "bits_per_char": "bpc",
    "grad_norm": "gnorm",
    "learning_rate": "lr",
}


def short_name(name: str) -> str:
    prefix = "val_" if name.startswith("val_") else ""
    name = name.removeprefix("val_")
    return prefix + SHORT_NAMES.get(name, name)


def format_value(name: str, value: float) -> str:
    """Four significant digits for a loss, three for the rest."""
    return f"{value:.{4 if name.endswith('loss') else 3}g}" if math.isfinite(value) else str(value)


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def render(step: int, steps: int | None, seconds: str, fields: list[Field], width: int) -> str:
    """The line for ``step`` of ``steps`` in at most ``width - 1`` characters (the last column
    would wrap on some terminals). ``fields`` are (name, value, rank) in the order shown; when
    the line is too long the bar goes first, then the field of the highest rank (the time
    ranks :data:`SECONDS_RANK`), and so on."""
    room = max(width - 1, 1)
    counter = f"{step}/{steps}" if steps else str(step)
    shown = [(short_name(name), format_value(name, value), rank) for name, value, rank in fields]
    values = "  ".join(f"{name} {value}" for name, value, _ in shown)
    line = " ".join(p for p in (counter, seconds, values) if p)
    bar = min(BAR_WIDTH, room - len(line) - 1)
    if bar >= 5:
        done = bar if not steps else min(bar, round(bar * step / steps))
        return " ".join(p for p in (counter, "━" * done + "─" * (bar - done), seconds, values) if p)
    while True:  # no room for a bar: drop what matters least until the line fits
        values = "  ".join(f"{name} {value}" for name, value, _ in shown)
        line = " ".join(p for p in (counter, seconds, values) if p)
        if len(line) <= room:
            return line
        worst = max((rank for _, _, rank in shown), default=-1)
        if seconds and SECONDS_RANK > worst:
            seconds = ""
        elif shown:
            shown.pop(max(i for i, f in enumerate(shown) if f[2] == worst))
        else:
            return line[:room]


class ProgressLine:
    """Prints :func:`render`'s line: redrawn in place on a terminal (at most every ``interval``
    seconds), once per epoch otherwise or with ``every_step=False``."""

    def __init__(self, steps: int | None, *, every_step: bool = True, interval: float = 0.1, stream=None):
        self.steps, self.interval = steps, interval
        self.stream = stream if stream is not None else sys.stdout
        interactive = getattr(self.stream, "isatty", lambda: False)() or "ipykernel" in sys.modules
        self.redraw = every_step and interactive
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = 0  # characters of the line on screen

    def due(self) -> bool:
        """Whether :meth:`update` would draw now (so the caller can skip building the fields)."""
        return self.redraw and time.perf_counter() - self.last_draw >= self.interval

    def update(self, step: int, fields: list[Field]) -> None:
        if not self.due():
            return
        now = self.last_draw = time.perf_counter()
        elapsed = now - self.start
        eta = f"ETA {format_seconds(elapsed / step * (self.steps - step))}" if self.steps and step else ""
        self._draw(render(step, self.steps, eta, fields, terminal_width()), end="")

    def finish(self, step: int, fields: list[Field]) -> None:
        elapsed = format_seconds(time.perf_counter() - self.start)
        self._draw(render(step, self.steps or step, elapsed, fields, terminal_width()), end="\n")

    def _draw(self, line: str, end: str) -> None:
        pad = " " * max(self.drawn - len(line), 0)
        self.stream.write(("\r" if self.drawn else "") + line + pad + end)
        self.stream.flush()
        self.drawn = 0 if end else len(line)


def terminal_width() -> int:
    """``$COLUMNS``, else the terminal's width, else 80."""
    return shutil.get_terminal_size((80, 24)).columns
