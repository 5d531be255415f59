"""Quality within a time budget: validation loss of a character model on CORPUS.

CORPUS is split 90/5/5 (train/validation/test, contiguous, as TFDS splits Tiny
Shakespeare); training stops when ``--minutes`` of wall-clock training time are
spent, then the best weights (by validation loss) are evaluated.

    python -m benchmarks.textgen_quality ../shared/data/tinyshakespeare.txt --minutes 5

Targets from the issue: <= 1.88 nats/char within 5 minutes, <= 1.50 within 60.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="UTF-8 text (e.g. ../shared/data/tinyshakespeare.txt)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (wall clock)")
    parser.add_argument("--write", action="store_true", help="write the result into benchmarks/RESULTS.md")
    parser.epilog = "Any other flag is passed to 'seqzoo train textgen' (default: an lstm of 256 units)."
    args, train_flags = parser.parse_known_args(argv)

    import keras

    from tasks import text_generation as tg

    flags = train_flags or [
        "--model", "lstm", "--units", "256", "--seq-len", "100", "--batch-size", "64", "--learning-rate", "3e-3"]
    budget = args.minutes * 60

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.perf_counter() - self.start > budget:
                self.model.stop_training = True

    clock = Budget()
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as runs:
        targs = tg.build_parser().parse_args(
            ["--text-file", args.corpus, "--epochs", "1000", "--steps-per-epoch", "200", "--patience", "1000",
             "--sample-length", "200", "--runs", runs, "--no-export", "--no-monitor", *flags])
        model, config, data, history = tg.train(targs, callbacks=[clock])
    train_s = time.perf_counter() - clock.start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    result = tg.evaluate(model, data)
    load_after = os.getloadavg()[0]
    chars = clock.steps * targs.batch_size * targs.seq_len
    what = (f"{config.model} units={config.units} layers={config.num_layers} seq_len={targs.seq_len} "
            f"batch={targs.batch_size} lr={targs.learning_rate}")
    table = [
        "| budget | trained | steps | chars seen | val nats/char | val bits/char | test nats/char |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| {args.minutes:g} min | {train_s / 60:.1f} min wall, {cpu_s / 60:.1f} min CPU | {clock.steps} | "
        f"{chars / 1e6:.1f} M | {result['val_loss']:.3f} | {result['val_bits_per_char']:.3f} | "
        f"{result['test_loss']:.3f} |",
    ]
    note = (f"{what}; {machine()}; load average {load_before:.1f} at start, {load_after:.1f} at end "
            "(the machine was shared with other jobs when the load is above 2)")
    print("\n" + note + "\n\n" + "\n".join(table))
    if args.write:
        cmd = "python -m benchmarks.textgen_quality " + " ".join(sys.argv[1:] if argv is None else argv)
        write_textgen_section("quality", "\n".join(["### Quality within a time budget", "", f"`{cmd}`", "",
                                                    note, "", *table]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
