"""Stopping a run at a step boundary when the operator or the machine asks.

A batch scheduler, Kubernetes or a preemptible VM sends SIGTERM some seconds before
it kills; a person presses Ctrl-C (SIGINT). While :class:`StopRequests` is active
the first such signal only records the request: training notices it after the
current step, writes a step checkpoint and raises :class:`TrainingInterrupted`.
A second Ctrl-C exits at once.

Signal handlers can only be installed from the main thread; elsewhere (a worker
thread, a notebook kernel's executor) the context does nothing and signals keep
their usual effect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from zoo.errors import SeqzooError

# The exit status a shell reports for a process ended by the signal: 128 + its number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(SeqzooError):
    """Training stopped at a step boundary on a signal; a step checkpoint was written (when the
    run has a folder). ``exit_status`` is the shell convention for the signal (130, 143)."""

    def __init__(self, signum: int, run_dir: Path | None, epoch: int, step: int):
        self.signum, self.run_dir, self.epoch, self.step = signum, run_dir, epoch, step
        self.exit_status = EXIT_STATUS.get(signum, 128 + int(signum))
        where = f"stopped by {signal.Signals(signum).name} after step {step} (epoch {epoch + 1})"
        if run_dir is None:
            super().__init__(f"{where}; the run has no folder (run_dir), so nothing was saved")
        else:
            super().__init__(f"{where}; checkpoint saved in {Path(run_dir) / 'checkpoint'}")


def _exit_at_once(what: str = "") -> None:
    """A second Ctrl-C: leave now, by the one way out that no library can swallow."""
    print(f"\nInterrupted again: exiting now{' ' + what if what else ''}.", file=sys.stderr, flush=True)
    os._exit(EXIT_STATUS[signal.SIGINT])


class StopRequests:
    """``with StopRequests() as stop:`` -- SIGTERM and the first SIGINT set ``stop.signum``
    instead of ending the process; a second SIGINT exits at once with status 130."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            _exit_at_once("without a checkpoint")
        if self.signum is None:
            self.signum = signum
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            hint = " (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""
            print(f"\n{name}: stopping after the current step{hint}.", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_STATUS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training: ends the command the way Ctrl-C does (exit status 143)."""


@contextlib.contextmanager
def signals_end_the_command() -> Iterator[None]:
    """Outside training: SIGTERM raises :class:`Terminated` (by default it would end the process
    without a word) and Ctrl-C raises ``KeyboardInterrupt`` as usual, except that a second Ctrl-C
    exits at once -- a first one can be swallowed when it lands in a ``__del__`` method.
    :class:`StopRequests` takes over while training runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []

    def on_sigterm(signum, frame):
        raise Terminated()

    def on_sigint(signum, frame):
        if pressed:
            _exit_at_once()
        pressed.append(signum)
        raise KeyboardInterrupt()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
        signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
