"""Training throughput: seqzoo's training path vs bare Keras ``model.fit`` vs PyTorch.

A character language model (Embedding 64 -> LSTM/GRU 256 x layers -> Dense vocab),
sequence 100, batch 64, Adam, on the same token batches; bf16 is Keras's
``mixed_bfloat16`` policy (seqzoo: ``ModelConfig(dtype="mixed_bfloat16")``, the
``--dtype`` flag) and PyTorch's CPU autocast. Every contender is built and
warmed up first; then the timings are interleaved (contender A, B, C, A, B, C,
...) and the median of the repeats is reported, so a slow spell on a shared
machine hits all of them alike. A Keras timing is the steady state inside one
``fit`` call (after its first batch); the first batch of a fit is reported apart.
seqzoo's layers are ``zoo.layers.FusedLSTM`` / ``FusedGRU`` (a fused CPU loop: float32
states, matmuls on the compute dtype), the ``keras`` contender's are
``keras.layers.LSTM`` / ``GRU``.

The ``keras-xla``, ``keras-unroll`` and ``keras-hoisted`` contenders are speed
levers tried one at a time on bare Keras (XLA, an unrolled loop, the input
projection hoisted out of the recurrence).

``--breakdown`` also times every contender with its recurrent layers replaced by
Dense layers of the same width (same embedding, head, loss, optimizer and training
path): that is the rest of the step, and the step minus it is what the recurrent
layers cost. It tells whether a gap to PyTorch is in the recurrent layers or around
them.

    python -m benchmarks.train_speed                       # full grid, writes RESULTS.md
    python -m benchmarks.train_speed --cells lstm --layers 1 --precisions fp32 --repeats 3
    python -m benchmarks.train_speed --cells lstm --layers 1 --contenders keras,keras-xla,keras-unroll,keras-hoisted
    python -m benchmarks.train_speed --cells lstm --precisions bf16 --contenders seqzoo,torch --breakdown

Needs the ``bench`` extra (``pip install -e .[bench]``: the CPU build of PyTorch).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class Shape:
    vocab: int = 65
    embed: int = 64
    units: int = 256
    seq_len: int = 100
    batch: int = 64


def _tokens(shape: Shape, batches: int, corpus: str | None, seed: int = 0) -> np.ndarray:
    """(batches, batch, seq_len + 1) token ids: real text if a corpus is given, else uniform random."""
    rng = np.random.default_rng(seed)
    n = batches * shape.batch * (shape.seq_len + 1)
    if corpus:
        text = open(corpus, encoding="utf-8").read()
        vocab = sorted(set(text))
        ids = np.array([vocab.index(c) for c in text[: n + 1]] if len(vocab) <= shape.vocab else [], dtype="int32")
        ids = np.resize(ids, n) if len(ids) else rng.integers(0, shape.vocab, n)
    else:
        ids = rng.integers(0, shape.vocab, n)
    return ids.astype("int32").reshape(batches, shape.batch, shape.seq_len + 1)


def _keras_timer(model, data: np.ndarray, fit: Callable, steps: int) -> Callable[[], float]:
    """Times ``steps`` training steps inside one ``fit`` call, from the end of its first
    batch to the end of its last: steady-state speed. What a fit call costs once (seqzoo's
    fit traces its train step anew on every call) is outside the timed window for every
    Keras contender alike; ``timed.setup`` collects it (the "first batch of a fit" column)."""
    import keras
    import tensorflow as tf

    x, y = data[..., :-1].reshape(-1, data.shape[-1] - 1), data[..., 1:].reshape(-1, data.shape[-1] - 1)
    batch = data.shape[1]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat().prefetch(2)

    class Window(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.start, self.first = time.perf_counter(), time.perf_counter() - self.begin
            self.end = time.perf_counter()

    def timed() -> float:
        window = Window()
        fit(model, ds, steps + 1, [window])
        timed.setup.append(window.first)
        return window.end - window.start

    timed.setup = []
    fit(model, ds, 3, [])  # warm-up: tracing, XLA compilation
    return timed


def _char_model(body, shape: Shape):
    """Embedding -> ``body`` (the recurrent layers) -> float32 logits."""
    import keras

    import zoo

    inputs = keras.Input((shape.seq_len,), dtype="int32")
    x = keras.layers.Embedding(shape.vocab, shape.embed)(inputs)
    logits = keras.layers.Dense(shape.vocab, dtype="float32")(body(x))
    return zoo.SeqModel(inputs, logits)


def _dtype(precision: str) -> str:
    return "mixed_bfloat16" if precision == "bf16" else "float32"


def zoo_model_name(cell: str, layers: int) -> str:
    """The zoo model that is a plain ``layers``-deep stack of ``cell`` (lstm or gru)."""
    return "gru" if cell == "gru" else ("lstm" if layers == 1 else "stacked_lstm")


def _dense_body(layers: int, shape: Shape, dtype: str):
    """The recurrent stack replaced by ``layers`` Dense layers of the same width (``--breakdown``)."""
    import keras

    def body(x):
        for _ in range(layers):
            x = keras.layers.Dense(shape.units, dtype=dtype)(x)
        return x

    return body


def seqzoo_contender(cell: str, layers: int, precision: str, shape: Shape, data, steps: int, *, rest: bool = False):
    import keras

    import zoo
    from zoo import training

    config = zoo.ModelConfig(
        zoo_model_name(cell, layers),
        units=shape.units,
        num_layers=layers,
        return_sequences=True,
        dtype=_dtype(precision),
    )
    body = _dense_body(layers, shape, _dtype(precision)) if rest else (lambda x: zoo.apply(config, x))
    model = _char_model(body, shape)
    training.compile_model(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return _keras_timer(
        model,
        data,
        lambda m, ds, n, cbs: training.fit(m, ds, epochs=1, steps_per_epoch=n, verbose=0, callbacks=cbs),
        steps,
    )


def _keras_layers(cell: str, layers: int, shape: Shape, dtype: str, *, hoisted: bool = False, unroll: bool = False):
    import keras

    if hoisted and cell != "lstm":
        raise ValueError("the keras-hoisted contender is written for lstm only")
    rnn = {"lstm": hoisted_lstm_class() if hoisted else keras.layers.LSTM, "gru": keras.layers.GRU}[cell]

    def body(x):
        for _ in range(layers):
            x = rnn(shape.units, return_sequences=True, unroll=unroll, dtype=dtype)(x)
        return x

    return body


def keras_contender(cell, layers, precision, shape, data, steps, *, jit_compile=False, rest=False, **lever):
    """Bare Keras: the same char model, ``model.compile`` + ``model.fit``, nothing else."""
    import keras

    body = (
        _dense_body(layers, shape, _dtype(precision))
        if rest
        else _keras_layers(cell, layers, shape, _dtype(precision), **lever)
    )
    model = _char_model(body, shape)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return _keras_timer(
        model, data, lambda m, ds, n, cbs: m.fit(ds, epochs=1, steps_per_epoch=n, verbose=0, callbacks=cbs), steps
    )


def hoisted_lstm_class():
    """``keras.layers.LSTM`` with the input projection hoisted out of the recurrence: one
    (batch*T, in) x (in, 4 units) matmul before the loop, only h x U inside it (a lever
    measured here, not used by the zoo). Same weights and outputs as ``keras.layers.LSTM``
    without masking or dropout, which this benchmark does not use."""
    import keras
    from keras import ops
    from keras.src import backend

    class Hoisted(keras.layers.LSTM):
        def inner_loop(self, sequences, initial_state, mask, training=False):
            cell = self.cell
            z_in = ops.matmul(sequences, cell.kernel) + cell.bias  # (batch, T, 4 units)

            def step(z_t, states):
                h, c = states
                c, o = cell._compute_carry_and_output_fused(
                    ops.split(z_t + ops.matmul(h, cell.recurrent_kernel), 4, -1), c
                )
                h = o * cell.activation(c)
                return h, [h, c]

            return backend.rnn(
                step,
                z_in,
                list(initial_state),
                mask=mask,
                input_length=sequences.shape[1],
                return_all_outputs=self.return_sequences,
            )

    return Hoisted


def _torch_timer(
    cell: str, layers: int, precision: str, shape: Shape, data: np.ndarray, steps: int, rest: bool = False
):
    """Build and warm a PyTorch model; return a function that times ``steps`` training steps
    (``rest``: with the recurrent layers replaced by Linear layers of the same width)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

    class CharModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(shape.vocab, shape.embed)
            if rest:
                widths = [shape.embed] + [shape.units] * layers
                self.body = torch.nn.Sequential(
                    *(torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
                )
            else:
                self.rnn = rnn_cls(shape.embed, shape.units, num_layers=layers, batch_first=True)
            self.head = torch.nn.Linear(shape.units, shape.vocab)

        def forward(self, x):
            x = self.embed(x)
            return self.head(self.body(x) if rest else self.rnn(x)[0])

    model = CharModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = torch.from_numpy(data.astype("int64"))
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(n: int) -> None:
        for i in range(n):
            b = batches[i % len(batches)]
            x, y = b[:, :-1], b[:, 1:]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(x)
            loss = loss_fn(logits.float().reshape(-1, shape.vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(3)

    def timed() -> float:
        start = time.perf_counter()
        run(steps)
        return time.perf_counter() - start

    return timed


def torch_contender(cell: str, layers: int, precision: str, shape: Shape, data, steps: int, *, rest: bool = False):
    """PyTorch runs in its own process: in one process with TensorFlow, each framework's
    thread pools slow the other down."""
    import subprocess

    np.save(data_file := os.path.join(_tmpdir(), "tokens.npy"), data)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.train_speed",
            "--torch-worker",
            cell,
            str(layers),
            precision,
            str(steps),
            data_file,
            str(int(rest)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError("the PyTorch worker failed to start")

    def timed() -> float:
        worker.stdin.write("time\n")
        worker.stdin.flush()
        return float(worker.stdout.readline())

    return timed


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="seqzoo-bench-")


def _torch_worker(cell: str, layers: str, precision: str, steps: str, data_file: str, rest: str = "0") -> int:
    timed = _torch_timer(cell, int(layers), precision, Shape(), np.load(data_file), int(steps), rest=rest == "1")
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "time":
            print(timed(), flush=True)
    return 0


CONTENDERS = {
    "seqzoo": seqzoo_contender,
    "keras": keras_contender,
    "torch": torch_contender,
    # Levers, one at a time, on bare Keras:
    "keras-xla": lambda *a, **kw: keras_contender(*a, jit_compile=True, **kw),
    "keras-unroll": lambda *a, **kw: keras_contender(*a, unroll=True, **kw),
    "keras-hoisted": lambda *a, **kw: keras_contender(*a, hoisted=True, **kw),
}


REST = ":rest"  # suffix of a contender timed with Dense layers in place of its recurrent ones


def measure(
    cells, layers_list, precisions, repeats: int, steps: int, shape: Shape, corpus, contenders, breakdown: bool = False
) -> list[dict]:
    data = _tokens(shape, 16, corpus)
    contenders = list(contenders) + ([name + REST for name in contenders] if breakdown else [])
    tokens_per_run = steps * shape.batch * shape.seq_len
    rows = []
    for cell in cells:
        for layers in layers_list:
            for precision in precisions:
                timers = {}
                for name in contenders:
                    print(f"  building {name} {cell} x{layers} {precision} ...", file=sys.stderr, flush=True)
                    base, rest = name.removesuffix(REST), name.endswith(REST)
                    timers[name] = CONTENDERS[base](cell, layers, precision, shape, data, steps, rest=rest)
                times = {name: [] for name in timers}
                for _ in range(repeats):
                    for name, timed in timers.items():  # interleaved
                        times[name].append(timed())
                row = {"cell": cell, "layers": layers, "precision": precision}
                if {"seqzoo", "torch"} <= set(times):  # the ratio within each interleaved round
                    row["seqzoo/torch rounds"] = [t / s for s, t in zip(times["seqzoo"], times["torch"], strict=True)]
                for name, ts in times.items():
                    row[name] = tokens_per_run / statistics.median(ts)
                    if hasattr(timers[name], "setup"):
                        row[f"{name} setup"] = statistics.median(timers[name].setup)
                rows.append(row)
                print("  " + ", ".join(f"{k}: {v:,.0f} tok/s" for k, v in row.items() if k in timers), file=sys.stderr)
    return rows


def table(rows: list[dict], contenders) -> str:
    head = ["cell", "layers", "precision"] + [f"{c} tok/s" for c in contenders]
    if "torch" in contenders:
        head += [f"{c}/torch" for c in contenders if c != "torch"]
    if {"seqzoo", "torch"} <= set(contenders):
        head += ["seqzoo/torch per round, min-max"]
    if {"seqzoo", "keras"} <= set(contenders):
        head += ["seqzoo vs keras", "first batch of a fit, s (seqzoo / keras)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["cell"], str(r["layers"]), r["precision"]] + [f"{r[c]:,.0f}" for c in contenders]
        if "torch" in contenders:
            cells += [f"{r[c] / r['torch']:.2f}x" for c in contenders if c != "torch"]
        if {"seqzoo", "torch"} <= set(contenders):
            rounds = r["seqzoo/torch rounds"]
            cells += [f"{min(rounds):.2f}-{max(rounds):.2f}x"]
        if {"seqzoo", "keras"} <= set(contenders):
            cells += [
                f"{(r['seqzoo'] / r['keras'] - 1) * 100:+.1f}%",
                f"{r['seqzoo setup']:.2f} / {r['keras setup']:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def breakdown_table(rows: list[dict], contenders, shape: Shape) -> str:
    """ms per step: the whole step, the rest (Dense in place of the recurrent layers), and
    their difference (the recurrent layers), each also as speed vs PyTorch (its ms / these ms:
    above 1x is faster, as in :func:`table`)."""
    ms = lambda tok_s: shape.batch * shape.seq_len / tok_s * 1000  # noqa: E731
    head = ["cell", "layers", "precision", "contender", "step ms", "rest ms", "recurrent ms"]
    if "torch" in contenders:
        head += ["step vs torch", "rest vs torch", "recurrent vs torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        parts = {c: (ms(r[c]), ms(r[c + REST])) for c in contenders}
        for c, (step, rest) in parts.items():
            cells = [r["cell"], str(r["layers"]), r["precision"], c, f"{step:.1f}", f"{rest:.1f}", f"{step - rest:.1f}"]
            if "torch" in contenders:
                t_step, t_rest = parts["torch"]
                cells += [f"{t_step / step:.2f}x", f"{t_rest / rest:.2f}x", f"{(t_step - t_rest) / (step - rest):.2f}x"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--torch-worker"]:
        return _torch_worker(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm,gru")
    parser.add_argument("--layers", default="1,2", help="comma-separated depths")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32,bf16")
    parser.add_argument(
        "--contenders", default="seqzoo,keras,torch", help=f"comma-separated from {', '.join(CONTENDERS)}"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds; the median is reported")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing")
    parser.add_argument(
        "--corpus", default=None, help="optional text file for real tokens (speed does not depend on it)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time each contender with Dense layers in place of its recurrent ones, and split each "
        "step into the recurrent layers and the rest",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.breakdown and not set(contenders) <= {"seqzoo", "keras", "torch"}:
        parser.error("--breakdown takes the contenders seqzoo, keras and torch only")
    if "torch" in contenders:
        try:
            import torch  # noqa: F401
        except ImportError:
            parser.error("PyTorch is not installed: pip install -e '.[bench]' (or drop torch from --contenders)")
    import tensorflow as tf  # noqa: F401

    from benchmarks.results import machine, write_section

    levers = ": levers" if any(c.startswith("keras-") for c in contenders) else ""  # its own RESULTS.md section
    shape = Shape()
    rows = measure(
        args.cells.split(","),
        [int(v) for v in args.layers.split(",")],
        args.precisions.split(","),
        args.repeats,
        args.steps,
        shape,
        args.corpus,
        contenders,
        breakdown=args.breakdown,
    )
    body = (
        f"## Training speed{levers} (`python -m benchmarks.train_speed {' '.join(argv)}`)\n\n"
        f"{machine()}\n\nChar LM: Embedding {shape.embed} -> RNN {shape.units} x layers -> Dense {shape.vocab}, "
        f"sequence {shape.seq_len}, batch {shape.batch}, Adam; median of {args.repeats} interleaved timings of "
        f"{args.steps} steps each, after warm-up.\n\n{table(rows, contenders)}\n"
    )
    if args.breakdown:
        body += (
            "\nWhere the step goes: the rest is the same model and training path with Dense layers of the same "
            "width in place of the recurrent ones; recurrent = step - rest.\n\n"
            f"{breakdown_table(rows, contenders, shape)}\n"
        )
    print(body)
    if not args.no_write:
        write_section("train_speed_levers" if levers else "train_speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
