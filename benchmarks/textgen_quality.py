"""Quality within a time budget: validation loss of a character model on CORPUS.

CORPUS is split 90/5/5 (train/validation/test, contiguous, as TFDS splits Tiny
Shakespeare); training stops when ``--minutes`` of wall-clock training time are
spent, then the best weights (by validation loss) are evaluated.

    python -m benchmarks.textgen_quality ../shared/data/tinyshakespeare.txt --minutes 5

Targets: <= 1.88 nats/char within 5 minutes, <= 1.50 within 60.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

from benchmarks.results import machine
from benchmarks.textgen_sampling_speed import write_textgen_section

# The model the benchmark trains when no textgen flag is given.
DEFAULT_MODEL = {"model": "lstm", "units": 256, "seq_len": 100, "batch_size": 64, "learning_rate": 3e-3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="UTF-8 text (e.g. ../shared/data/tinyshakespeare.txt)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (wall clock)")
    parser.add_argument("--write", action="store_true", help="write the result into benchmarks/RESULTS.md")
    parser.epilog = "Any other flag is a 'seqzoo train textgen' flag (default: an lstm of 256 units)."
    args, rest = parser.parse_known_args(argv)

    import keras

    from tasks import text_generation as tg
    from tasks.options import build_parser

    # The textgen flags after the benchmark's own, parsed into the task's options (only those given).
    given = vars(build_parser(tg.Options, "python -m benchmarks.textgen_quality [textgen flags]").parse_args(rest))
    quick = given.pop("quick", False)
    budget = args.minutes * 60

    class Budget(keras.callbacks.Callback):
        """Stops training once the budget is spent; the clock and CPU time stop when training ends."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.perf_counter() - self.start > budget:
                self.model.stop_training = True

        def on_train_end(self, logs=None):  # training ends here, before run() evaluates the best weights
            self.seconds = time.perf_counter() - self.start
            self.cpu = resource.getrusage(resource.RUSAGE_SELF)

    clock = Budget()
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as runs:
        # Patience (and epochs) high enough that only the time budget ends training; textgen flags win.
        fields = {
            "text_file": args.corpus,
            "steps_per_epoch": 200,
            "patience": 1000,
            "runs": runs,
            "export": False,
            "monitor": False,
            **(given if rest else DEFAULT_MODEL),
        }
        # --quick: the preset's epochs and sample length instead of the budget's.
        options = (
            tg.Options.quick(**fields) if quick else tg.Options(**{"epochs": 1000, "sample_length": 200, **fields})
        )
        result = tg.run(options, callbacks=[clock])
    train_s = clock.seconds
    cpu_s = (clock.cpu.ru_utime + clock.cpu.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    metrics, config = result.metrics, result.details["config"]
    load_after = os.getloadavg()[0]
    chars = clock.steps * options.batch_size * options.seq_len
    what = (
        f"{config.model} units={config.units} layers={config.num_layers} seq_len={options.seq_len} "
        f"batch={options.batch_size} lr={options.learning_rate}"
    )
    table = [
        "| budget | trained | steps | chars seen | val nats/char | val bits/char | test nats/char |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| {args.minutes:g} min | {train_s / 60:.1f} min wall, {cpu_s / 60:.1f} min CPU | {clock.steps} | "
        f"{chars / 1e6:.1f} M | {metrics['val_loss']:.3f} | {metrics['val_bits_per_char']:.3f} | "
        f"{metrics['test_loss']:.3f} |",
    ]
    note = (
        f"{what}; {machine()}; load average {load_before:.1f} at start, {load_after:.1f} at end "
        "(the machine was shared with other jobs when the load is above 2)"
    )
    print("\n" + note + "\n\n" + "\n".join(table))
    if args.write:
        cmd = "python -m benchmarks.textgen_quality " + " ".join(sys.argv[1:] if argv is None else argv)
        write_textgen_section(
            "quality", "\n".join(["### Quality within a time budget", "", f"`{cmd}`", "", note, "", *table])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
