"""Quality within a time budget: validation loss of a character model on CORPUS.

CORPUS is split 90/5/5 (train/validation/test, contiguous, as TFDS splits Tiny
Shakespeare); training stops when ``--minutes`` of wall-clock training time are
spent, then the best weights (by validation loss) are evaluated.

    python -m benchmarks.textgen_quality ../shared/data/tinyshakespeare.txt --minutes 3
    python -m benchmarks.textgen_quality ../shared/data/tinyshakespeare.txt --minutes 60 --preset best --write

With a ``--preset`` the recipe's own epochs end training (the budget only caps it).
Targets: <= 1.75 nats/char validation within 3 minutes (nanoGPT's CPU figure is 1.88),
<= 1.45 within 60. ``--write`` also saves the learning curve (validation loss against
training wall time, CSV and PNG) and the final sample under ``benchmarks/curves/``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.results import machine
from benchmarks.textgen_sampling_speed import write_textgen_section

CURVES = Path(__file__).resolve().parent / "curves"
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
    quick, preset = given.pop("quick", False), given.pop("preset", None)
    budget = args.minutes * 60

    class Budget(keras.callbacks.Callback):
        """Stops training once the budget is spent; the clock and CPU time stop when training ends."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.steps = 0
            self.curve = []  # (epoch, training seconds, steps, train loss, val loss)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            elapsed = round(time.perf_counter() - self.start, 1)
            self.curve.append((epoch + 1, elapsed, self.steps, logs.get("loss"), logs.get("val_loss")))

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
        if preset:
            fields = {k: v for k, v in fields.items() if k not in ("steps_per_epoch", "patience", "monitor")}
            options = tg.Options.preset(preset, **{"sample_length": 300, **fields})
        elif quick:
            options = tg.Options.quick(**fields)
        else:
            options = tg.Options(**{"epochs": 1000, "sample_length": 200, **fields})
        result = tg.run(options, callbacks=[clock])
    train_s = clock.seconds
    cpu_s = (clock.cpu.ru_utime + clock.cpu.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    metrics, config = result.metrics, result.details["config"]
    load_after = os.getloadavg()[0]
    chars = clock.steps * options.batch_size * options.seq_len
    what = (
        (f"--preset {preset}: " if preset else "")
        + f"{config.model} units={config.units} layers={config.num_layers} dropout={config.dropout} "
        f"mode={options.mode} seq_len={options.seq_len} batch={options.batch_size} lr={options.learning_rate} "
        f"({options.lr_schedule}) epochs={options.epochs} {config.dtype}"
    )
    # In stream mode the per-epoch validation carries the state through the split (as char-rnn
    # evaluates); the final evaluation restarts it every seq_len characters, which costs a little.
    carried = min((c[4] for c in clock.curve if c[4] is not None), default=float("nan"))
    table = [
        "| budget | trained | steps | chars seen | val nats/char | val bits/char | test nats/char "
        "| val nats/char, state carried (best epoch) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| {args.minutes:g} min | {train_s / 60:.1f} min wall, {cpu_s / 60:.1f} min CPU | {clock.steps} | "
        f"{chars / 1e6:.1f} M | {metrics['val_loss']:.3f} | {metrics['val_bits_per_char']:.3f} | "
        f"{metrics['test_loss']:.3f} | {f'{carried:.3f}' if options.mode == 'stream' else '-'} |",
    ]
    note = (
        f"{what}; {machine()}; load average {load_before:.1f} at start, {load_after:.1f} at end "
        "(the machine was shared with other jobs when the load is above 2)"
    )
    print("\n" + note + "\n\n" + "\n".join(table))
    if args.write:
        cmd = "python -m benchmarks.textgen_quality " + " ".join(sys.argv[1:] if argv is None else argv)
        name = f"textgen_{args.minutes:g}min" + (f"_{preset}" if preset else "")
        per_step = options.batch_size * options.seq_len
        curve = [(e, t, steps * per_step, loss, val) for e, t, steps, loss, val in clock.curve]
        saved = save_curve(name, curve, result.details["sample"], what)
        key = "quality" if args.minutes < 30 else "quality-long"
        title = f"### Quality within {args.minutes:g} minutes"
        write_textgen_section(key, "\n".join([title, "", f"`{cmd}`", "", note, "", *table, "", saved]))
    return 0


def save_curve(name: str, curve: list[tuple], sample: str | None, what: str) -> str:
    """``benchmarks/curves/NAME.csv`` (validation loss per epoch against training time), ``NAME.png``
    and ``NAME_sample.txt``; returns the markdown line that links them."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CURVES.mkdir(exist_ok=True)
    with open(CURVES / f"{name}.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["epoch", "train_seconds", "chars_seen", "train_loss", "val_loss"])
        out.writerows(curve)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    minutes = [c[1] / 60 for c in curve]
    ax.plot(minutes, [c[3] for c in curve], label="training (dropout on)", color="0.6")
    ax.plot(minutes, [c[4] for c in curve], label="validation", color="C0", marker=".")
    for target, label in ((1.75, "1.75: 3-minute target"), (1.45, "1.45: 60-minute target")):
        ax.axhline(target, color="C3", lw=0.8, ls="--")
        ax.annotate(label, (0, target), xytext=(2, 2), textcoords="offset points", color="C3", fontsize=7)
    ax.set(xlabel="training wall time (minutes)", ylabel="nats/char", ylim=(1.0, 2.6))
    ax.set_title(textwrap.fill(what, 110), fontsize=7)
    ax.legend()
    fig.tight_layout()
    fig.savefig(CURVES / f"{name}.png", dpi=120)
    plt.close(fig)
    if sample:
        (CURVES / f"{name}_sample.txt").write_text(sample)
    return f"Curve: [`curves/{name}.csv`](curves/{name}.csv), [plot](curves/{name}.png); final sample: [`curves/{name}_sample.txt`](curves/{name}_sample.txt)."


if __name__ == "__main__":
    sys.exit(main())
