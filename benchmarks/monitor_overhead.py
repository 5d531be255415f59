"""Cost of gradient-norm monitoring: training throughput with it on and off.

Both modes train the same character-level LSTM through ``zoo.training.fit``
(with a run folder, so CSV/TensorBoard writing is included), interleaved in
one process (on, off, off, on, ...) so drifting machine load hits both alike;
the median over repeats is reported. Every fit runs two epochs and the second
one is timed, from its start to the end of its logging (CSV, TensorBoard), so
tracing and other one-off costs of a run are excluded; they are printed apart.

    python -m benchmarks.monitor_overhead            # writes benchmarks/RESULTS.md section
    python -m benchmarks.monitor_overhead --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def make_timer():
    """A Keras callback timing the second epoch, from its start to the end of its logging."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.n = batch + 1

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.t0
            self.cpu_seconds = time.process_time() - self.c0

    return Timer()


def compiled_step_overhead(model, data, repeats: int, calls: int = 5) -> float:
    """Median paired CPU-time overhead (%) of the monitored compiled step over Keras's own."""
    import tensorflow as tf

    from zoo import monitor
    from zoo.train_step import TrainingPlan

    batch = next(iter(data))
    # SeqModel.train_step reads its plan when traced: Keras's own step without one, the monitored
    # step with the gradient statistics that fit(monitor=True) sets.
    plain = tf.function(model.train_step)
    plain(batch)  # trace
    model.set_training_plan(TrainingPlan(statistics=monitor.GradientStats(model)))
    try:
        watched = tf.function(model.train_step)
        watched(batch)  # trace
    finally:
        model.set_training_plan(None)
    cpu: dict[str, list[float]] = {"plain": [], "watched": []}
    for r in range(repeats):
        for name, fn in (("plain", plain), ("watched", watched))[:: 1 if r % 2 == 0 else -1]:
            c0 = time.process_time()
            for _ in range(calls):
                float(fn(batch)["loss"])
            cpu[name].append(time.process_time() - c0)
    return statistics.median(w / p - 1 for p, w in zip(cpu["plain"], cpu["watched"], strict=True)) * 100


def load_text(path: Path | None, chars: int) -> str:
    if path is not None and path.exists():
        return path.read_text()[:chars]
    import numpy as np

    rng = np.random.default_rng(0)
    return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz .,\n"), chars))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--text",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt",
        help="training text (default: tiny Shakespeare beside the repo; random text if absent)",
    )
    p.add_argument("--units", type=int, default=128, help="LSTM units")
    p.add_argument("--seq-len", type=int, default=100, help="characters per example (BPTT length)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per batch")
    p.add_argument(
        "--steps", type=int, default=30, help="training steps per epoch (two epochs per fit, the second timed)"
    )
    p.add_argument("--repeats", type=int, default=5, help="repeats per mode, interleaved")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.quick:
        args.units, args.seq_len, args.batch_size, args.steps, args.repeats = 16, 20, 8, 5, 2

    import keras
    import numpy as np
    import tensorflow as tf

    import zoo
    from benchmarks import results
    from zoo import training

    keras.utils.set_random_seed(0)
    n_batches = args.steps
    text = load_text(args.text, (n_batches * args.batch_size + 1) * args.seq_len + 1)
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], dtype="int32") if len(vocab) < 100 else None
    if ids is None:
        raise ValueError("expected a character text with < 100 distinct characters")
    n = n_batches * args.batch_size
    x = ids[: n * args.seq_len].reshape(n, args.seq_len)
    y = ids[1 : n * args.seq_len + 1].reshape(n, args.seq_len)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache()

    cfg = zoo.ModelConfig("lstm", units=args.units, return_sequences=True)
    inputs = keras.Input((None,), dtype="int32")
    h = zoo.apply(cfg, keras.layers.Embedding(len(vocab), 32)(inputs))
    model = zoo.SeqModel(inputs, keras.layers.Dense(len(vocab))(h))
    training.compile_model(
        model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), global_clipnorm=1.0
    )

    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}  # CPU seconds (all threads) per step
    run_seconds: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                timer = make_timer()
                t0 = time.perf_counter()
                training.fit(
                    model,
                    data,
                    epochs=2,
                    run_dir=Path(tmp) / f"{mode}{r}",
                    monitor=mode == "on",
                    checkpoint=False,
                    resume=False,
                    callbacks=[timer],
                    verbose=0,
                )
                run_seconds[mode].append(time.perf_counter() - t0)
                rates[mode].append(timer.n / timer.seconds)
                cpu[mode].append(timer.cpu_seconds / timer.n)
                print(
                    f"repeat {r + 1}/{args.repeats} monitor {mode:3s}: {rates[mode][-1]:7.2f} steps/s, "
                    f"{cpu[mode][-1] * 1000:7.1f} CPU ms/step",
                    file=sys.stderr,
                )

    # Paired (same repeat, back to back) ratios are steadier than a ratio of medians on a shared machine.
    wall = statistics.median(b / a - 1 for a, b in zip(rates["on"], rates["off"], strict=True)) * 100
    cpu_over = statistics.median(a / b - 1 for a, b in zip(cpu["on"], cpu["off"], strict=True)) * 100
    rows = [
        "| monitoring | median steps/s | median chars/s | median CPU ms/step | steps/s per repeat |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {m} | {statistics.median(rates[m]):.2f} | {statistics.median(rates[m]) * args.batch_size * args.seq_len:,.0f} | "
            f"{statistics.median(cpu[m]) * 1000:.1f} | " + ", ".join(f"{v:.2f}" for v in rates[m]) + " |"
            for m in ("off", "on")
        ),
    ]
    fit_on, fit_off = statistics.median(run_seconds["on"]), statistics.median(run_seconds["off"])
    step_over = compiled_step_overhead(model, data, args.repeats * 2)
    summary = (
        f"Overhead of monitoring (median of paired repeats): **{wall:+.1f}%** wall-clock time per step, "
        f"**{cpu_over:+.1f}%** CPU time per step (target <= 5%; negative = within noise). "
        f"The compiled train step alone (Keras's vs the monitored one, called back to back, no callbacks): "
        f"**{step_over:+.1f}%** CPU time per step. Whole 2-epoch fits including tracing and the PNG: median "
        f"{fit_on:.1f} s on, {fit_off:.1f} s off."
    )
    table = "\n".join(rows)
    print(table)
    print(summary)
    if not args.no_write and not args.quick:
        setup = (
            f"Char-level LSTM ({args.units} units, embedding 32, vocab {len(vocab)}), batch {args.batch_size} x "
            f"{args.seq_len} steps, Adam with global_clipnorm=1, fits of 2 epochs x {args.steps} steps with the second "
            f"epoch timed, {args.repeats} repeats per mode interleaved (on/off, off/on, ...). "
            f"CPU only: {results.machine()}; load average {os.getloadavg()[0]:.1f} at the end. Single repeats on a "
            "shared or virtual machine are noisy; interleaving and the median are meant to cancel most of it."
        )
        command = " ".join(["python -m benchmarks.monitor_overhead", *(sys.argv[1:] if argv is None else argv)])
        results.write_section(
            "monitor",
            "## Gradient-norm monitoring overhead\n\n"
            f"`{command}` -- {setup}\n\n"
            '"on" = `zoo.training.fit(monitor=True)`: global norm before/after clipping, per-layer and per-gate '
            "norms computed inside the compiled train step, written per step to `grad_norms.csv` and TensorBoard. "
            '"off" = `monitor=False` (Keras\'s own train step). Both write history.csv and epoch scalars.\n\n'
            f"{table}\n\n{summary}\n",
        )
        print(f"wrote {results.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
