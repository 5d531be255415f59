"""What a command shows on the terminal besides Keras's progress line: TensorFlow imported
without its C++ start-up chatter, and the short summary a command ends with.

TensorFlow's native libraries log before its logging is set up (absl's "All log messages
before absl::InitializeLog() ..." and CUDA probes such as "Could not find cuda drivers" and
"failed call to cuInit"); ``TF_CPP_MIN_LOG_LEVEL`` does not reach those lines, so
:func:`quiet_tensorflow` imports TensorFlow and looks for its devices with the process's
stderr captured, drops those lines and passes on the rest. ``SEQZOO_TF_LOGS=1`` shows
everything TensorFlow prints.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.options import Result

SHOW_LOGS = "SEQZOO_TF_LOGS"

# A line of native logging in absl's format ("I0000 00:00:1796471398.028585   31462 cudart_stub.cc:31] ...").
_NATIVE_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] .*)$"
)


def tensorflow_logs_wanted() -> bool:
    return os.environ.get(SHOW_LOGS, "").strip() not in ("", "0")


def quiet_tensorflow() -> None:
    """Import TensorFlow (and probe its devices) without its native start-up logging.

    Call it where a command starts its work, after parsing its flags, so that ``--help``
    never imports TensorFlow. With ``SEQZOO_XLA_CACHE`` set it first points XLA at its on-disk
    cache (:mod:`tasks.xla_cache`). A no-op once TensorFlow is imported or with ``SEQZOO_TF_LOGS=1``.
    When TensorFlow finds no GPU on a machine with an NVIDIA driver, one line in seqzoo's
    words says so.
    """
    from tasks import xla_cache

    xla_cache.enable()  # before the import: TensorFlow reads its XLA flags once
    if "tensorflow" in sys.modules or tensorflow_logs_wanted():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # native lines after start-up too (see zoo/__init__.py)
    with _native_stderr_filtered():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
    if not gpus and tf.test.is_built_with_cuda() and Path("/dev/nvidiactl").exists():
        print(
            f"seqzoo: this machine has an NVIDIA driver but TensorFlow found no usable GPU, so training runs on "
            f"the CPU ({SHOW_LOGS}=1 shows TensorFlow's reason)",
            file=sys.stderr,
        )


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Points file descriptor 2 at a temporary file (native code writes there directly) and
    afterwards writes back every line that is not native logging."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines()
                if not _NATIVE_LOG_LINE.match(line)
            ]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


# ----------------------------------------------------------------------------- the summary a command ends with


def print_summary(result: Result, task: str, *, data: str, headline: str, lines: Iterable[str] = (), files=()) -> None:
    """The few lines every ``seqzoo train`` command ends with: what was trained, the headline metric
    against its baseline (``headline``), and where the run folder, its plots and the export are::

        === textgen: lstm on corpus.txt, 256 units x 1 layer, 333,377 parameters, 1 epoch in 21 s ===
        test 2.104 bits/char (1.459 nats); unigram baseline 4.803 bits/char
        run folder: runs/textgen/lstm/20261205-114618
        plots: grad_norms.png (in the run folder)
        export: saved_models/textgen/lstm/1

    ``lines`` follow the headline; ``files`` are more (label, path) rows before the export. A resumed
    run says so (``40 epochs (resumed after epoch 12), 9 s``): the seconds are this command's.
    """
    from zoo.files import status

    config, epochs = result.details["config"], len(result.history.history.get("loss", []))
    seconds = f"{result.metrics['train_seconds']:.0f} s"
    trained = f"{_count(epochs, 'epoch')} in {seconds}"
    run = status(result.run_dir) if result.run_dir is not None else {}
    if run.get("resumed_after_epoch"):  # the seconds are this command's, not the earlier epochs'
        done = run.get("epochs_done", epochs)
        trained = f"{_count(done, 'epoch')} (resumed after epoch {run['resumed_after_epoch']}), {seconds}"
    print(
        f"\n=== {task}: {config.model} on {data}, "
        f"{config.units} units x {_count(config.num_layers, 'layer')}, {result.details['params']:,} parameters, "
        f"{trained} ==="
    )
    print(headline)
    for line in lines:
        print(line)
    if result.options.strategy != "none":
        print(f"strategy: {result.options.strategy}, {result.details['replicas']} replica(s) in sync")
    plots = sorted(p.name for p in Path(result.run_dir).glob("*.png"))
    rows = [
        ("run folder", result.run_dir),
        ("plots", ", ".join(plots) + " (in the run folder)" if plots else None),
        *files,
        ("export", result.export),
    ]
    for label, value in rows:
        if value is not None:
            print(f"{label}: {value}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
