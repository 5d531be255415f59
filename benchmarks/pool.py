"""Many small trainings side by side: one process per core, each TensorFlow single-threaded.

Models of a few thousand weights keep one core busy at best, so two processes finish
about twice as many runs as one process with two threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _single_thread() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run_all(fn: Callable[..., Any], jobs: Sequence[tuple], processes: int) -> Iterator[Any]:
    """``fn(*job)`` for every job, yielded as each finishes (in order when ``processes`` is 1,
    which runs them in this process)."""
    if processes <= 1:
        yield from (fn(*job) for job in jobs)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    with ProcessPoolExecutor(processes, mp_context=get_context("spawn"), initializer=_single_thread) as pool:
        for future in as_completed([pool.submit(fn, *job) for job in jobs]):
            yield future.result()
