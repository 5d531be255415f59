"""Why does an LSTM need its gates?

Five arms at roughly equal parameter counts and an equal budget of training sequences, on
two long-time-lag tasks:

- ``simple_rnn``: no gates (Keras's orthogonal recurrent initialization);
- ``lstm``, ``gru``: the zoo's models as they come (Keras initialization: LSTM forget-gate
  bias 1, GRU biases 0, so at the start the state keeps about half of itself per step);
- ``lstm_chrono``, ``gru_chrono``: the same models with chrono-initialized gate biases
  (Tallec & Ollivier 2018): LSTM forget bias log(U(1, T_max - 1)) and input bias its
  negative; GRU update-gate bias log(U(1, T_max - 1)) (Keras's GRU keeps the previous state
  in proportion to its update gate). At the start these gates hold what the cell stores for
  up to about T_max steps, as the forget-gate-free cell of Hochreiter & Schmidhuber (1997)
  did. ``T_max`` is the sequence length.

Tasks:

- the adding problem of Hochreiter & Schmidhuber (1997, experiment 4), laid out as they
  did: sequences of random length T .. T + T/10 (front-padded with zeros to one length),
  channel 0 a random value, channel 1 a marker: -1 on the first and the last pair, 1 on
  one of the first ten pairs and on one of the first T/2 - 1 pairs, so both marked values
  lie at least T/2 steps before the end. Values are U(0, 1) and the target is their sum
  (the modern scaling, where predicting the mean gives MSE 1/6); HS97 drew them from
  U(-1, 1) with target 0.5 + (X1 + X2)/4, which is our target / 2 (u = (X + 1)/2), so their
  tolerance of 0.04 is 0.08 here. A run is solved by the modern criterion (test MSE <= 0.01) and by
  HS97's (at least 99% of the test sequences within the tolerance).
- recall at lag L: one of 4 symbols at step 0, then L distractors (4 other symbols);
  the label is the first symbol (chance 0.25); solved at test accuracy >= 0.99.

Every arm (arm x task x length) sweeps its learning rate on seed 0, chosen on validation
data; the other paired seeds (the same training stream and the same initialization seed in
every arm) train at the chosen rate. The training data is a fresh stream, as in HS97, so
each sequence is seen once. Solved counts are compared seed by seed with McNemar's exact
test, per-run metrics with paired tests (studies.stats). Every run is stored as it finishes
(studies.store.RunStore), so a stopped study resumes.
"""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np

from studies import stats as S
from studies.common import markdown_table, pyplot, savefig
from studies.store import RunStore

NAME = "gating"
TITLE = "Gating: why does an LSTM need its gates?"
QUESTION = "Why does an LSTM need its gates?"
# arm -> (zoo model, gate-bias initialization)
ARMS = {
    "simple_rnn": ("simple_rnn", "keras"),
    "lstm": ("lstm", "keras"),
    "gru": ("gru", "keras"),
    "lstm_chrono": ("lstm", "chrono"),
    "gru_chrono": ("gru", "chrono"),
}
GATED = ("lstm", "gru", "lstm_chrono", "gru_chrono")
# Units per model so that the bodies have about the same number of weights: the question is
# what the gates do, not what extra capacity does.
UNITS = {"simple_rnn": 32, "lstm": 16, "gru": 18}
SYMBOLS = 4
HS97_TOLERANCE = 0.04  # absolute error on HS97's target scale
HS97_TO_OURS = 2.0  # our target = 2 x theirs (see the module docstring)
MSE_SOLVED = 0.01
HS97_RIGHT_SOLVED = 0.99
RECALL_SOLVED = 0.99
# (a, b): the hypothesis is that a is better than b. McNemar tests for every pair, paired tests too.
COMPARISONS = (
    ("lstm_chrono", "simple_rnn"),
    ("gru_chrono", "simple_rnn"),
    ("lstm", "simple_rnn"),
    ("gru", "simple_rnn"),
    ("lstm_chrono", "lstm"),
    ("gru_chrono", "gru"),
)
PUBLISHED = {
    "reference": "Hochreiter & Schmidhuber (1997), Long Short-Term Memory, Neural Computation 9(8), "
    "experiment 4 (adding problem), Table 7",
    "T": 100,
    "min_lag": 50,
    "weights": 93,
    "train_sequences": 74000,
    "wrong": 1,
    "test_sequences": 2560,
    "tolerance": HS97_TOLERANCE,
    "stop_rule": "the average training error was below 0.01 and the 2000 most recent sequences were processed "
    "correctly",
    "cell": "no forget gate: its constant error carousel kept the cell's content; input gates biased negative",
    "modern_reference": "Arjovsky, Shah & Bengio (2016), Unitary Evolution RNNs, Section 4.2: predicting "
    "the mean gives an expected MSE of 0.167; MSE <= 0.01 is the usual solved mark",
    "chrono_reference": "Tallec & Ollivier (2018), Can recurrent neural networks warp time?, ICLR, "
    "Section 4 (chrono initialization)",
    "mean_mse": 1.0 / 6.0,
}


def add_arguments(parser) -> None:
    parser.add_argument("--adding-lengths", default=None, help="minimal lengths T (default 100,200; 12 with --quick)")
    parser.add_argument("--recall-lags", default=None, help="lags L (default 100,200; 12 with --quick)")
    parser.add_argument(
        "--sequences", type=int, default=None, help="training sequences per run (default 32000; 640 with --quick)"
    )
    parser.add_argument("--batch", type=int, default=16, help="sequences per update")
    parser.add_argument("--lrs", default=None, help="Adam learning rates swept per arm (default 0.003,0.01)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new run after this many minutes; the report covers the settings that finished and "
        "running the study again resumes the rest",
    )


def _ints(text: str | None, default: list[int], what: str) -> list[int]:
    if text is not None and not text.strip():
        return []
    values = [int(v) for v in text.split(",")] if text else default
    if any(v < 8 for v in values):
        raise ValueError(f"{what} must all be >= 8, got {values}")
    return values


def _settings(args) -> dict:
    quick = bool(args.quick)
    sequences = args.sequences or (640 if quick else 32000)
    evals = 4 if quick else 16
    if args.batch < 1 or sequences < args.batch * evals:
        raise ValueError(f"--sequences must be >= {evals} x --batch, got {sequences} and {args.batch}")
    lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else [0.003, 0.01]
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ValueError(f"--lrs must be positive, got {lrs}")
    updates = sequences // args.batch
    return {
        "adding_lengths": _ints(args.adding_lengths, [12] if quick else [100, 200], "--adding-lengths"),
        "recall_lags": _ints(args.recall_lags, [12] if quick else [100, 200], "--recall-lags"),
        "arms": list(ARMS),
        "units": dict(UNITS),
        "batch": args.batch,
        "updates": updates - updates % evals,
        "evals": evals,
        "lrs": lrs,
        "optimizer": "adam",
        "global_clipnorm": 1.0,
        "seeds": list(range(args.seeds)),
        "n_val": 256 if quick else 512,
        "n_test": 256 if quick else 2560,
        "mse_solved": MSE_SOLVED,
        "hs97_tolerance": HS97_TOLERANCE,
        "tolerance": HS97_TOLERANCE * HS97_TO_OURS,
        "hs97_right_solved": HS97_RIGHT_SOLVED,
        "recall_solved": RECALL_SOLVED,
        "grad_sequences": 256,
    }


# --- data -------------------------------------------------------------------------------


def adding_data(n: int, T: int, rng: np.random.Generator):
    """HS97's adding problem at minimal length ``T`` in our scaling: ``(x, y)`` with x of shape
    (n, T + T // 10, 2), front-padded with zeros, and y = the sum of the two marked values."""
    width = T + T // 10
    lengths = rng.integers(T, width + 1, size=n)
    start = width - lengths
    rows = np.arange(n)
    x = np.zeros((n, width, 2), "float32")
    values = rng.uniform(size=(n, width)).astype("float32")
    x[..., 0] = np.where(np.arange(width)[None, :] >= start[:, None], values, 0.0)
    # The first marked pair is one of the first ten after the start marker (HS97 allow the start
    # pair itself and then zero its value; skipping it keeps the target a plain sum).
    half = T // 2 - 1
    first = rng.integers(1, min(10, half) + 1, size=n)
    second = rng.integers(1, half, size=n)  # one of the first T/2 - 1 pairs other than the first marked one
    second = np.where(second >= first, second + 1, second)
    x[rows, start, 1] = -1.0
    x[rows, width - 1, 1] = -1.0
    x[rows, start + first, 1] = 1.0
    x[rows, start + second, 1] = 1.0
    y = x[rows, start + first, 0] + x[rows, start + second, 0]
    return x, y.astype("float32")


def recall_data(n: int, L: int, rng: np.random.Generator, symbols: int = SYMBOLS):
    """One of ``symbols`` symbols at step 0, then ``L`` distractors drawn from ``symbols`` others
    (one-hot, length L + 1); the label is the first symbol."""
    y = rng.integers(0, symbols, size=n)
    tokens = np.concatenate([y[:, None], symbols + rng.integers(0, symbols, size=(n, L))], axis=1)
    return np.eye(2 * symbols, dtype="float32")[tokens], y.astype("int32")


def make_data(task: str, n: int, length: int, rng: np.random.Generator):
    return adding_data(n, length, rng) if task == "adding" else recall_data(n, length, rng)


def width(task: str, length: int) -> int:
    return length + length // 10 if task == "adding" else length + 1


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


_TASK_CODE = {"adding": 1, "recall": 2}
_VAL, _TEST, _CHRONO = 10**6, 2 * 10**6, 3 * 10**6  # stream offsets: none shares a stream with training


def hs97_right(pred, y, tolerance: float) -> float:
    """The fraction of sequences HS97 would count as processed correctly: |error| < tolerance."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(y, float)) < tolerance))


def adding_solved(mse: float, right: float, s: dict) -> tuple[bool, bool]:
    """(modern, HS97) criteria: test MSE <= 0.01; >= 99% of test sequences within tolerance."""
    ok = math.isfinite(mse)
    return ok and mse <= s["mse_solved"], ok and right >= s["hs97_right_solved"]


def recall_solved(acc: float, s: dict) -> bool:
    return math.isfinite(acc) and acc >= s["recall_solved"]


def chrono_biases(cell: str, weights: list, t_max: int, rng: np.random.Generator) -> list:
    """``weights`` of a Keras LSTM (bias gates i, f, c, o) or GRU (reset_after: biases (2, 3U), gates
    z, r, h) with chrono-initialized gate biases for dependencies up to ``t_max`` steps."""
    weights = [np.array(w) for w in weights]
    units = weights[1].shape[0]
    b = np.log(rng.uniform(1.0, max(t_max - 1, 2), size=units)).astype(weights[2].dtype)
    if cell == "lstm":
        weights[2][units : 2 * units] = b
        weights[2][:units] = -b
    elif cell == "gru":
        weights[2][0, :units] = b  # update gate z: h_t = z h_{t-1} + (1 - z) candidate
        weights[2][1, :units] = 0.0
    else:
        raise ValueError(f"chrono initialization is for lstm and gru, not {cell!r}")
    return weights


# --- training ----------------------------------------------------------------------------


class _Trainer:
    """One compiled model per (task, model, length), reused across runs: every run gets fresh
    initial weights (drawn as a new model would under its seed) and a reset optimizer, so it
    equals a run on a newly built model without tracing and compiling the training step again."""

    def __init__(self, s: dict):
        self.s = s
        self.models: dict = {}

    def _build(self, task: str, model: str, length: int):
        import keras

        import zoo

        inputs = keras.Input((width(task, length), 2 if task == "adding" else 2 * SYMBOLS))
        h = zoo.apply(zoo.ModelConfig(model, units=self.s["units"][model]), inputs)
        if task == "adding":
            outputs = keras.layers.Dense(1)(h)
        else:
            outputs = keras.layers.Dense(SYMBOLS, activation="softmax")(h)
        return zoo.SeqModel(inputs, outputs)

    def model(self, task: str, model: str, length: int):
        from zoo import training

        key = (task, model, length)
        if key not in self.models:
            m = self._build(task, model, length)
            training.compile_model(
                m,
                loss="mse" if task == "adding" else "sparse_categorical_crossentropy",
                learning_rate=self.s["lrs"][0],
                global_clipnorm=self.s["global_clipnorm"],
                optimizer=self.s["optimizer"],
                jit_compile=True,  # small cells: per-op overhead dominates, which XLA removes
            )
            m.optimizer.build(m.trainable_variables)
            self.models[key] = m
        return self.models[key]

    def initial_weights(self, task: str, arm: str, length: int, seed: int) -> list:
        import keras

        model, init = ARMS[arm]
        keras.utils.set_random_seed(seed)
        fresh = self._build(task, model, length)
        if init == "chrono":
            body = fresh.get_layer(f"{model}_0")  # the zoo names its recurrent layers <cell>_<index>
            rng = _rng(_CHRONO, seed)
            body.set_weights(chrono_biases(model, body.get_weights(), width(task, length), rng))
        weights = fresh.get_weights()
        return weights

    def run(self, task: str, arm: str, length: int, lr: float, seed: int, gradients: bool = False) -> dict:
        from zoo import training
        from zoo.monitor import TrainingDiverged

        s = self.s
        m = self.model(task, ARMS[arm][0], length)
        m.set_weights(self.initial_weights(task, arm, length, seed))
        for v in m.optimizer.variables:
            v.assign(np.zeros(v.shape, v.dtype))
        m.optimizer.learning_rate.assign(lr)

        code = _TASK_CODE[task]
        xv, yv = make_data(task, s["n_val"], length, _rng(_VAL, code, length))
        xt, yt = make_data(task, s["n_test"], length, _rng(_TEST, code, length))
        g_x, g_y = xt[: s["grad_sequences"]], yt[: s["grad_sequences"]]
        grads = {"init": input_gradient_norms(m, task, g_x, g_y)} if gradients else {}
        per_eval = s["updates"] // s["evals"] * s["batch"]
        curve = [{"sequences": 0, **self._evaluate(m, task, xv, yv)}]
        diverged = False
        for chunk in range(s["evals"]):
            x, y = make_data(task, per_eval, length, _rng(seed, chunk, code, length))
            try:
                training.fit(m, _batches(x, y, s["batch"]), epochs=1, verbose=0, monitor=False, checkpoint=False)
            except TrainingDiverged:
                diverged = True
                break
            curve.append({"sequences": (chunk + 1) * per_eval, **self._evaluate(m, task, xv, yv)})
        result = {"diverged": diverged, "curve": curve, "params": int(m.count_params())}
        if diverged:
            nan = float("nan")
            result.update({"mse": nan, "right": nan} if task == "adding" else {"acc": nan, "loss": nan})
        else:
            result.update(self._evaluate(m, task, xt, yt))
            if gradients:
                grads["trained"] = input_gradient_norms(m, task, g_x, g_y)
        if gradients:
            result["grads"] = grads
        return result

    def _evaluate(self, model, task: str, x, y) -> dict:
        p = model.predict(x, batch_size=512, verbose=0)
        if task == "adding":
            pred = p[:, 0].astype(float)
            return {"mse": float(np.mean((pred - y) ** 2)), "right": hs97_right(pred, y, self.s["tolerance"])}
        return {
            "acc": float(np.mean(p.argmax(-1) == y)),
            "loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))),
        }


def _batches(x, y, batch: int):
    import tensorflow as tf

    # A fresh stream: every sequence is new, so there is nothing to shuffle.
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def input_gradient_norms(model, task: str, x, y) -> list[float]:
    """Mean over the batch of ||d loss / d x_t|| for every step t (time order)."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        p = model(x)
        if task == "adding":
            loss = tf.reduce_mean(tf.square(p[:, 0] - y))
        else:
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, p))
    g = tape.gradient(loss, x)
    return tf.reduce_mean(tf.norm(g, axis=-1), axis=0).numpy().astype(float).tolist()


# --- the study ---------------------------------------------------------------------------


def _key(s: dict, task: str, arm: str, length: int, lr: float, seed: int) -> dict:
    fixed = {k: s[k] for k in ("batch", "updates", "evals", "optimizer", "global_clipnorm", "n_val", "n_test")}
    model, init = ARMS[arm]
    return {
        "study": "gating-v2",
        "task": task,
        "arm": arm,
        "init": init,
        "length": length,
        "units": s["units"][model],
        "lr": lr,
        "seed": seed,
        **fixed,
    }


def _val_score(task: str, run: dict) -> float:
    """The validation number a sweep minimizes: final validation MSE (adding) or cross-entropy (recall)."""
    last = run["curve"][-1]
    value = last["mse"] if task == "adding" else last["loss"]
    return value if math.isfinite(value) else float("inf")


def _settings_list(s: dict) -> list[tuple[str, int]]:
    """In the order they run: the HS97 reproduction first, the longer lags after."""
    order = [("adding", T) for T in s["adding_lengths"]] + [("recall", L) for L in s["recall_lags"]]
    return sorted(order, key=lambda tl: (tl[1], tl[0]))


def run(args, out) -> dict:
    from tqdm import tqdm

    s = _settings(args)
    store = RunStore(out)
    trainer = _Trainer(s)
    deadline = time.time() + 60 * args.max_minutes if getattr(args, "max_minutes", None) else None
    first = s["seeds"][0]
    sweeps, rows, curves, grads, pending = [], [], {}, {}, []
    runs_per_arm = len(s["lrs"]) + len(s["seeds"]) - 1
    bar = tqdm(total=len(_settings_list(s)) * len(ARMS) * runs_per_arm, desc="gating runs", unit="run")

    def get(key, work):
        done = store.get(key)
        if done is None and deadline is not None and time.time() > deadline:
            pending.append(key)
            return None
        result = store.run(key, work)
        bar.update()
        return result

    for task, length in _settings_list(s):
        for arm in ARMS:
            # Seed 0 sweeps the rate; its run at the chosen rate is also seed 0 of the paired runs.
            want = task == "adding"
            sweep = {}
            for lr in s["lrs"]:
                key = _key(s, task, arm, length, lr, first)
                sweep[lr] = get(key, partial(trainer.run, task, arm, length, lr, first, gradients=want))
            if any(r is None for r in sweep.values()):
                pending.extend(_key(s, task, arm, length, None, seed) for seed in s["seeds"][1:])
                continue
            best = min(s["lrs"], key=lambda lr: (_val_score(task, sweep[lr]), lr))
            for lr, r in sweep.items():
                sweeps.append(
                    {
                        "task": task,
                        "length": length,
                        "arm": arm,
                        "lr": lr,
                        "val": r["curve"][-1],
                        "diverged": r["diverged"],
                        "chosen": lr == best,
                    }
                )
            runs = {first: sweep[best]}
            for seed in s["seeds"][1:]:
                runs[seed] = get(
                    _key(s, task, arm, length, best, seed), partial(trainer.run, task, arm, length, best, seed)
                )
            for seed, r in runs.items():
                if r is None:
                    continue
                rows.append(_row(s, task, length, arm, seed, best, r))
                curves.setdefault(f"{task}:{length}", {}).setdefault(arm, []).append(r["curve"])
                if "grads" in r and seed == first:
                    grads.setdefault(f"{task}:{length}", {})[arm] = r["grads"]
    bar.close()
    results = {
        "settings": s,
        "published": PUBLISHED,
        "sweeps": sweeps,
        "rows": rows,
        "curves": curves,
        "grads": grads,
        "chance": {"adding_mse": PUBLISHED["mean_mse"], "recall_acc": 1.0 / SYMBOLS},
        "pending": [f"{k['task']} {k['length']} {k['arm']} seed {k['seed']}" for k in pending],
        "stored_runs": len(store),
    }
    results["analysis"] = analyse(results)
    _plot_curves(results, out)
    _plot_gradients(results, out)
    return results


def _row(s: dict, task: str, length: int, arm: str, seed: int, lr: float, r: dict) -> dict:
    model, init = ARMS[arm]
    row = {"task": task, "length": length, "arm": arm, "model": model, "init": init, "seed": seed, "lr": lr}
    row.update({"units": s["units"][model], "params": r["params"], "diverged": r["diverged"]})
    if task == "adding":
        modern, hs = adding_solved(r["mse"], r["right"], s)
        row.update({"test_mse": r["mse"], "test_right": r["right"], "solved_mse": modern, "solved_hs97": hs})
    else:
        row.update({"test_acc": r["acc"], "test_loss": r["loss"], "solved": recall_solved(r["acc"], s)})
    return row


def _values(results: dict, task: str, length: int, arm: str, key: str) -> list:
    rows = [r for r in results["rows"] if r["task"] == task and r["length"] == length and r["arm"] == arm]
    return [r[key] for r in sorted(rows, key=lambda r: r["seed"])]


def _finite(values: list[float], fallback: float) -> list[float]:
    """A diverged run (NaN) counts as no better than the fallback (chance)."""
    return [v if math.isfinite(v) else fallback for v in values]


CRITERIA = {"adding": ("solved_mse", "solved_hs97"), "recall": ("solved",)}
CRITERION_NAMES = {"solved_mse": "solved (MSE <= 0.01)", "solved_hs97": "solved (HS97)", "solved": "solved"}


def analyse(results: dict) -> dict:
    """Per finished setting: per-arm summaries, chance checks, McNemar tests on solved runs and paired tests."""
    s, chance = results["settings"], results["chance"]
    n_seeds = len(s["seeds"])
    out = {}
    for task, length in _settings_list(s):
        if any(len(_values(results, task, length, arm, "seed")) < n_seeds for arm in ARMS):
            continue  # not finished: reported as pending
        metric, higher, fallback = (
            ("test_mse", False, chance["adding_mse"]) if task == "adding" else ("test_acc", True, chance["recall_acc"])
        )
        arms = {}
        for arm in ARMS:
            v = _finite(_values(results, task, length, arm, metric), fallback)
            mean, low, high = S.mean_ci(v)
            entry = {
                "values": v,
                "mean": mean,
                "ci": [low, high],
                "at_chance": bool(S.at_chance(v, fallback, higher_is_better=higher)),
                "diverged": int(sum(_values(results, task, length, arm, "diverged"))),
                "n": len(v),
            }
            entry["seeds"] = _values(results, task, length, arm, "seed")
            for c in CRITERIA[task]:
                outcomes = [bool(x) for x in _values(results, task, length, arm, c)]
                k = int(sum(outcomes))
                entry[c] = {"count": k, "ci": list(S.rate_ci(k, len(v))), "outcomes": outcomes}
            if task == "adding":
                entry["right"] = _finite(_values(results, task, length, arm, "test_right"), 0.0)
            arms[arm] = entry
        paired, counts = [], []
        for a, b in COMPARISONS:
            p = S.paired(
                arms[a]["values"],
                arms[b]["values"],
                a=a,
                b=b,
                metric="test MSE" if task == "adding" else "test accuracy",
                higher_is_better=higher,
                hypothesis=f"{a} {'has a lower test MSE' if task == 'adding' else 'recalls more accurately'} than {b}",
            ).to_dict()
            p["both_at_chance"] = arms[a]["at_chance"] and arms[b]["at_chance"]
            paired.append(p)
            if arms[a]["seeds"] != arms[b]["seeds"]:
                raise ValueError(
                    f"{task} {length}: {a} has seeds {arms[a]['seeds']}, {b} {arms[b]['seeds']}; solved counts are "
                    "compared seed by seed, so every arm needs the same seeds: run the study again to finish them"
                )
            for c in CRITERIA[task]:
                # Both arms of a seed see the same data stream and initialization seed: McNemar's exact test
                # on the seeds where exactly one arm solved, not Fisher's test of two independent samples.
                what = CRITERION_NAMES[c]
                matched = S.matched_counts(
                    arms[a][c]["outcomes"],
                    arms[b][c]["outcomes"],
                    a=a,
                    b=b,
                    what=what,
                    hypothesis=f"{a} is {what} more often than {b}",
                ).to_dict()
                counts.append({**matched, "criterion": c})
        chosen = {
            sw["arm"]: sw["lr"]
            for sw in results["sweeps"]
            if sw["task"] == task and sw["length"] == length and sw["chosen"]
        }
        out[f"{task}:{length}"] = {
            "task": task,
            "length": length,
            "metric": metric,
            "arms": arms,
            "paired": paired,
            "counts": counts,
            "lr": chosen,
        }
    return out


# --- plots ---------------------------------------------------------------------------------


def _plot_curves(results: dict, out) -> None:
    plt = pyplot()
    keys = list(results["curves"]) or ["none:0"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        task, length = key.split(":")
        field = "mse" if task == "adding" else "acc"
        for i, arm in enumerate(ARMS):
            for j, curve in enumerate(results["curves"].get(key, {}).get(arm, [])):
                xs = [c["sequences"] for c in curve]
                ys = [c[field] for c in curve]
                ax.plot(xs, ys, color=f"C{i}", alpha=0.6, lw=1, label=arm if j == 0 else None)
        if task == "adding":
            ax.axhline(results["chance"]["adding_mse"], color="grey", ls=":", label="predict the mean")
            ax.axhline(results["settings"]["mse_solved"], color="k", ls="--", lw=0.8, label="solved (MSE 0.01)")
            ax.set(yscale="log", ylabel="validation MSE", title=f"adding (HS97), T = {length}")
        else:
            ax.axhline(results["chance"]["recall_acc"], color="grey", ls=":", label="chance")
            ax.set(ylim=(0, 1.05), ylabel="validation accuracy", title=f"recall, L = {length}")
        ax.set(xlabel="training sequences seen")
        ax.legend(fontsize=7)
    savefig(fig, out, "gating_curves.png")


def _plot_gradients(results: dict, out) -> None:
    plt = pyplot()
    keys = list(results["grads"]) or ["none:0"]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for i, arm in enumerate(ARMS):
            g = results["grads"].get(key, {}).get(arm, {})
            for phase, style in (("init", ":"), ("trained", "-")):
                if phase in g:
                    norms = np.asarray(g[phase])[::-1]  # index = distance from the loss
                    ax.plot(np.arange(len(norms)), norms, style, color=f"C{i}", label=f"{arm} ({phase})")
        ax.set(
            yscale="log",
            xlabel="distance from the loss (steps)",
            ylabel="||d loss / d x_t||",
            title=f"adding, T = {key.split(':')[1]}: gradient at each input (seed 0)",
        )
        ax.legend(fontsize=6)
    savefig(fig, out, "gating_gradients.png")


# --- the report ----------------------------------------------------------------------------


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 10**4):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def _p(p: float) -> str:
    """``= 0.03`` or ``< 1e-4``, to follow a "p"."""
    text = S.fmt_p(p)
    return text if text.startswith("<") else f"= {text}"


def _ci(entry: dict) -> str:
    low, high = entry["ci"]
    return f"{_f(entry['mean'])} [{_f(low)}, {_f(high)}]"


def _rate(entry: dict, n: int) -> str:
    return f"{entry['count']}/{n} [{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}]"


def _title(task: str, length: int) -> str:
    return f"adding problem (HS97), T = {length}" if task == "adding" else f"recall, L = {length}"


def _main_criterion(task: str) -> str:
    return "solved_mse" if task == "adding" else "solved"


def _paired_line(p: dict) -> str:
    if p["both_at_chance"]:
        return f"{p['hypothesis']}: {p['a']} and {p['b']} are both at chance: a negative control, nothing compared."
    fields = {k: v for k, v in p.items() if k != "both_at_chance"}
    return S.Paired(**fields).sentence()


def _counts_line(c: dict) -> str:
    return S.MatchedCounts.from_dict({k: v for k, v in c.items() if k != "criterion"}).sentence()


def _find(items: list, a: str, b: str, criterion: str | None = None) -> dict:
    return next(i for i in items if i["a"] == a and i["b"] == b and (criterion is None or i["criterion"] == criterion))


def _failures(results: dict) -> list[str]:
    """Gated arms that did not solve every seed, by setting."""
    out = []
    for a in results["analysis"].values():
        crit = _main_criterion(a["task"])
        failed = [
            f"{arm} {a['arms'][arm][crit]['count']}/{a['arms'][arm]['n']}"
            for arm in GATED
            if a["arms"][arm][crit]["count"] < a["arms"][arm]["n"]
        ]
        if failed:
            out.append(f"{_title(a['task'], a['length'])}: " + ", ".join(failed))
    return out


def _summary(results: dict) -> str:
    an, pub, s = results["analysis"], results["published"], results["settings"]
    parts = [f"**{QUESTION}**"]
    adds = [a for a in an.values() if a["task"] == "adding"]
    if adds:
        a = max(adds, key=lambda a: a["length"])
        c = _find(a["counts"], "lstm_chrono", "simple_rnn", "solved_mse")
        p = _find(a["paired"], "lstm_chrono", "simple_rnn")
        solved = ", ".join(f"{arm} {a['arms'][arm]['solved_mse']['count']}/{a['arms'][arm]['n']}" for arm in ARMS)
        parts.append(
            f"HS97's adding problem at T = {a['length']}, solved (test MSE <= {s['mse_solved']}): {solved}; "
            f"gates that start open (lstm_chrono) beat no gates (simple_rnn) on test MSE: **{p['verdict']}** "
            f"(difference {_f(p['mean_diff'])} [{_f(p['ci_low'])}, {_f(p['ci_high'])}], 95% CI, paired t p "
            f"{_p(p['t_p'])}); on solved runs: **{c['verdict']}** (McNemar exact p {_p(c['p'])}"
            + (
                f", the smallest p {c['seeds']} paired seeds can give: a paired exact test needs at least "
                f"{S.min_discordant()} discordant seeds for p < {S.ALPHA:g})"
                if c["verdict"] == "inconclusive" and c["seeds"] < S.min_discordant() and c["a_more"] == c["seeds"]
                else ")"
            )
        )
    fails = _failures(results)
    if fails:
        parts.append("gated arms that failed: " + "; ".join(fails))
    contra = [
        f"{p['b']} beats {p['a']} on {_title(a['task'], a['length'])} ({p['metric']} {_f(float(np.mean(p['b_values'])))} "
        f"vs {_f(float(np.mean(p['a_values'])))}, paired t p {_p(p['t_p'])})"
        for a in an.values()
        for p in a["paired"]
        if p["verdict"] == "contradicted" and not p["both_at_chance"]
    ]
    if contra:
        parts.append("contradicted: " + "; ".join(contra))
    parts.append(
        f"published: HS97's LSTM solved T = {pub['T']} after {pub['train_sequences']:,} training sequences "
        f"({pub['wrong']}/{pub['test_sequences']} test sequences wrong)"
    )
    if results.get("pending"):
        parts.append(f"**incomplete: {len(results['pending'])} runs pending**")
    return " — ".join(parts) + "."


def _min_gap(n: int) -> int:
    """The fewest successes out of ``n`` paired seeds that beat 0/``n`` at p < 0.05 under McNemar's exact test
    (each success a discordant seed); ``n + 1`` when even n/n vs 0/n cannot."""
    k = S.min_discordant()
    return k if k <= n else n + 1


def render(results: dict) -> str:
    s, an, pub = results["settings"], results["analysis"], results["published"]
    n_seeds = len(s["seeds"])
    sequences = s["updates"] * s["batch"]
    params: dict = {}
    for r in results["rows"]:
        params.setdefault(r["task"], {})[r["arm"]] = r["params"]
    lines = [f"# {TITLE}", "", _summary(results), ""]
    if results.get("quick"):
        lines += ["*Quick smoke run: tiny lengths and budgets; the numbers say nothing about the question.*", ""]
    if results.get("pending"):
        lines += [
            f"**Incomplete run**: {len(results['pending'])} runs had not started when the time limit "
            f"(--max-minutes) was reached; settings with a missing run are left out below. Running the study "
            f"again resumes from the {results['stored_runs']} stored runs (runs.jsonl).",
            "",
        ]
    lines += [
        "## Question and hypotheses",
        "",
        "A simple RNN carries information only through repeated multiplication by its recurrent matrix "
        "and a squashing function, so the gradient reaching a distant input shrinks (or grows) geometrically. "
        "The LSTM's cell is additive: its forget gate (absent in the 1997 LSTM, whose cell always kept its "
        "content) decides how much of the cell survives each step, and the GRU's update gate does the same "
        "for its state. Gates can only carry a signal across a long lag if they hold the state open along "
        "the way, so what they start at may matter as much as having them.",
        "",
        "- H1: gated models solve long-lag tasks that the simple RNN cannot, at the same budget and about "
        "the same number of weights (each gated arm vs simple_rnn; McNemar's exact test on solved runs and a "
        "paired t-test on the per-run metric, both paired by seed).",
        "- H2: gates that start open (chrono initialization) learn these tasks where the default "
        "initialization (forget bias 1; the state keeps about half of itself per step) does not "
        "(lstm_chrono vs lstm, gru_chrono vs gru).",
        "",
        "## Published result and ours",
        "",
        f"{pub['reference']}: an LSTM with {pub['weights']} weights ({pub['cell']}), trained online until "
        f"{pub['stop_rule']}, solved T = {pub['T']} (minimal lag {pub['min_lag']}) after "
        f"{pub['train_sequences']:,} training sequences, with {pub['wrong']} of {pub['test_sequences']} test "
        f"sequences wrong (absolute error >= {pub['tolerance']} on their target scale).",
        "",
    ]
    rep = [
        [
            "HS97 (published)",
            f"T = {pub['T']}",
            "lstm (1997, no forget gate)",
            f"{pub['train_sequences']:,} (until solved)",
            f"{pub['wrong'] / pub['test_sequences']:.4f}",
            "1 reported",
        ]
    ]
    for a in an.values():
        if a["task"] != "adding":
            continue
        for arm in ARMS:
            e = a["arms"][arm]
            wrong = [1.0 - v for v in e["right"]]
            rep.append(
                [
                    "ours",
                    f"T = {a['length']}",
                    arm,
                    f"{sequences:,} (fixed)",
                    f"median {_f(float(np.median(wrong)), 4)}, best {_f(min(wrong), 4)}",
                    f"{e['solved_hs97']['count']}/{e['n']} (HS97), {e['solved_mse']['count']}/{e['n']} (MSE)",
                ]
            )
    lines += [
        markdown_table(
            ["source", "length", "model", "training sequences", "fraction of test sequences wrong", "solved runs"], rep
        ),
        "",
        f"Modern criterion: {pub['modern_reference']}. In our scaling predicting the mean gives "
        f"MSE {_f(pub['mean_mse'])}. Chrono initialization: {pub['chrono_reference']}.",
        "",
        "## Setup",
        "",
        f"- Adding problem laid out as HS97 (module docstring): values U(0, 1), target X1 + X2 "
        f"(= 2 x HS97's 0.5 + (X1 + X2)/4 with their values X = 2u - 1 in U(-1, 1)), so HS97's tolerance "
        f"{s['hs97_tolerance']} is {_f(s['tolerance'])} here. Solved: test MSE <= {s['mse_solved']} (modern), or "
        f">= {s['hs97_right_solved']:.0%} of test sequences within the tolerance (HS97's per-sequence rule; the "
        "99% run-level cut is ours). Lengths T .. T + T/10, both marked values at least T/2 steps before the end.",
        f"- Recall: one of {SYMBOLS} symbols at step 0, then L distractors; solved at test accuracy "
        f">= {s['recall_solved']}; chance {results['chance']['recall_acc']:.2f}.",
        f"- Models: one layer, units {', '.join(f'{m} {u}' for m, u in s['units'].items())}, so that the weights "
        f"match roughly ({_params(params)}, with the head). Chrono arms differ from their default arm only in "
        "the initial gate biases.",
        f"- Budget per run, equal for every arm: {s['updates']:,} updates of {s['batch']} sequences = "
        f"{sequences:,} training sequences, each new (a fresh stream); Adam, global gradient-norm clip "
        f"{s['global_clipnorm']}; {s['evals']} validation points per run.",
        f"- Data: the training stream depends on the seed only (the same sequences in the same order for every "
        f"arm), as does the initialization; validation ({s['n_val']}) and test ({s['n_test']}) sequences come "
        "from their own fixed streams per length; validation picks the learning rate and draws the curves, "
        "test gives every reported number.",
        f"- Learning rate: each arm (arm x task x length) swept {', '.join(str(v) for v in s['lrs'])} on seed "
        f"{s['seeds'][0]}, chosen by the final validation MSE (adding) or cross-entropy (recall); seed "
        f"{s['seeds'][0]}'s run at the chosen rate is one of the {n_seeds} paired seeds "
        f"({', '.join(str(v) for v in s['seeds'])}).",
        "",
    ]
    sweep_rows = []
    for sw in results["sweeps"]:
        val = sw["val"]
        shown = f"MSE {_f(val['mse'])}" if sw["task"] == "adding" else f"acc {_f(val['acc'])}, CE {_f(val['loss'])}"
        sweep_rows.append(
            [
                _title(sw["task"], sw["length"]),
                sw["arm"],
                sw["lr"],
                shown + (" (diverged)" if sw["diverged"] else ""),
                "**chosen**" if sw["chosen"] else "",
            ]
        )
    lines += [
        "Learning-rate sweep (final validation numbers, seed 0):",
        "",
        markdown_table(["setting", "arm", "lr", "validation", ""], sweep_rows),
        "",
        "## Results",
        "",
        "![validation curves](gating_curves.png)",
        "",
        "Validation curves of every paired seed (log scale for MSE). Means with 95% t intervals over seeds; "
        "solved counts with exact (Clopper-Pearson) 95% intervals. A diverged run counts as chance.",
        "",
    ]
    for a in an.values():
        task = a["task"]
        lines += [f"### {_title(task, a['length'])}", ""]
        table = []
        for arm in ARMS:
            e = a["arms"][arm]
            row = [arm, a["lr"].get(arm, "n/a"), _ci(e)]
            if task == "adding":
                row += [
                    _f(float(np.mean(e["right"]))),
                    _rate(e["solved_mse"], e["n"]),
                    _rate(e["solved_hs97"], e["n"]),
                ]
            else:
                row += [_rate(e["solved"], e["n"])]
            row += [e["diverged"], "**yes** (negative control)" if e["at_chance"] else "no"]
            table.append(row)
        header = ["arm", "lr", "test MSE" if task == "adding" else "test accuracy"]
        header += ["fraction right (HS97)", "solved (MSE)", "solved (HS97)"] if task == "adding" else ["solved"]
        header += ["diverged", "at chance"]
        lines += [markdown_table(header, table), ""]
        lines += [f"- {_counts_line(c)}" for c in a["counts"]]
        lines += [f"- {_paired_line(p)}" for p in a["paired"]]
        lines.append("")
    if results["grads"]:
        lines += [
            "## Where the gradient vanishes",
            "",
            "![gradients](gating_gradients.png)",
            "",
            "||d loss / d x_t|| at the step nearest the loss over its value T/2 steps back (the minimal lag of "
            "both marked values), seed 0; larger = more vanishing, and 'underflow' means the far gradient is "
            "exactly 0 in float32. One seed: read the order of magnitude.",
            "",
        ]
        table = []
        for key, gs in results["grads"].items():
            T = int(key.split(":")[1])
            for arm in ARMS:
                if arm in gs:
                    g = gs[arm]
                    table.append(
                        [f"T = {T}", arm] + [_ratio(g.get(phase, []), T // 2) for phase in ("init", "trained")]
                    )
        lines += [markdown_table(["setting", "arm", "at initialization", "after training"], table), ""]
    lines += ["## Verdicts", ""]
    lines += _verdicts(results)
    lines += ["", "## What remains open", ""]
    lines += _open(results)
    lines += ["", f"Wall time of the invocation that wrote these results: {results.get('seconds', 'n/a')} s."]
    return "\n".join(lines) + "\n"


def _params(params: dict) -> str:
    parts = []
    for task, by_arm in params.items():
        models = {ARMS[arm][0]: n for arm, n in by_arm.items()}
        parts.append(f"{task}: " + ", ".join(f"{m} {n}" for m, n in models.items()) + " weights")
    return "; ".join(parts) or "no finished runs"


def _ratio(norms, distance: int) -> str:
    """||gradient|| at the last step over its value ``distance`` steps before it."""
    norms = np.asarray(norms, float)
    if len(norms) <= distance:
        return "n/a"
    far = norms[-1 - distance]
    return "underflow" if far == 0 else f"{norms[-1] / far:.3g}"


HYPOTHESES = (
    ("H1, gates that start open (chrono) vs no gates", (("lstm_chrono", "simple_rnn"), ("gru_chrono", "simple_rnn"))),
    ("H1, gates at the default initialization vs no gates", (("lstm", "simple_rnn"), ("gru", "simple_rnn"))),
    ("H2, gates that start open vs the default initialization", (("lstm_chrono", "lstm"), ("gru_chrono", "gru"))),
)
_LABELS = ("supported", "contradicted", "inconclusive", "negative control")


def _tally(labels: list[str]) -> str:
    return ", ".join(f"{labels.count(v)} {v}" for v in _LABELS if labels.count(v)) or "none"


def _verdicts(results: dict) -> list[str]:
    lines = []
    for name, pairs in HYPOTHESES:
        paired, solved = [], []
        for a in results["analysis"].values():
            for x, y in pairs:
                p = _find(a["paired"], x, y)
                paired.append("negative control" if p["both_at_chance"] else p["verdict"])
                solved.append(_find(a["counts"], x, y, _main_criterion(a["task"]))["verdict"])
        lines.append(
            f"- **{name}** ({len(paired)} arm pairs x settings): paired tests {_tally(paired)}; "
            f"McNemar exact tests on solved runs {_tally(solved)}."
        )
    lines += ["", "Each test:", ""]
    for a in results["analysis"].values():
        t = _title(a["task"], a["length"])
        for c in a["counts"]:
            if c["criterion"] == _main_criterion(a["task"]):
                lines.append(f"- {t}: {c['hypothesis']}: **{c['verdict']}** (McNemar exact p {_p(c['p'])})")
        for p in a["paired"]:
            v = "negative control (both at chance)" if p["both_at_chance"] else p["verdict"]
            lines.append(
                f"- {t}: {p['hypothesis']}: **{v}** (difference {_f(p['mean_diff'])} "
                f"[{_f(p['ci_low'])}, {_f(p['ci_high'])}], paired t p {_p(p['t_p'])})"
            )
    if not lines:
        lines.append("- No setting finished: nothing to decide yet.")
    lines.append(
        f"- {sum(len(a['counts']) + len(a['paired']) for a in results['analysis'].values())} tests in all, "
        "each at 0.05 without a multiplicity correction: read a lone p near 0.05 with care."
    )
    return lines


def _open(results: dict) -> list[str]:
    n = len(results["settings"]["seeds"])
    gap = _min_gap(n)
    lines = []
    floored = []
    for a in results["analysis"].values():
        t = _title(a["task"], a["length"])
        for c in a["counts"]:
            if c["verdict"] != "inconclusive" or not c["a_more"] + c["b_more"]:
                continue
            if gap > n:
                floored.append(c)
                continue
            lines.append(
                f"- {t}, {c['hypothesis']}: {c['a_count']}/{c['a_n']} vs {c['b_count']}/{c['b_n']} "
                f"({c['a_more'] + c['b_more']} discordant seeds, McNemar exact p {_p(c['p'])}) is not significant; "
                f"with {n} paired seeds McNemar's exact test needs at least {gap} discordant seeds, all one way "
                f"({gap}/{n} vs 0/{n}), so more seeds would settle it."
            )
        for p in a["paired"]:
            if p["both_at_chance"]:
                lines.append(
                    f"- {t}: {p['a']} and {p['b']} both stay at chance within {results['settings']['updates']:,} "
                    "updates; whether either learns with a longer budget is open."
                )
            elif p["verdict"] == "inconclusive":
                lines.append(
                    f"- {t}, {p['hypothesis']}: the 95% interval [{_f(p['ci_low'])}, {_f(p['ci_high'])}] "
                    f"includes 0 with {n} paired seeds; more seeds would narrow it."
                )
    if floored:
        extreme = sum(c["a_more"] + c["b_more"] == n for c in floored)
        lines.append(
            f"- {len(floored)} solved-run comparisons with discordant seeds are inconclusive ({extreme} of them "
            f"{n}/{n} vs 0/{n} or the reverse, McNemar exact p = {2 * 0.5**n:.4g}): with {n} paired seeds no paired "
            f"exact test can reach p < {S.ALPHA:g}, since it needs at least {S.min_discordant()} discordant seeds, "
            f"all one way. At least {S.min_discordant()} seeds would let them decide; until then the paired tests "
            "of the per-run metric carry these comparisons."
        )
    fails = _failures(results)
    if fails:
        lines.append(
            "- Gated arms that did not solve every seed within the budget ("
            + "; ".join(fails)
            + "): whether a longer budget solves them (HS97 trained until their stopping rule) is open."
        )
    lrs = results["settings"]["lrs"]
    edge = sorted({sw["arm"] for sw in results["sweeps"] if sw["chosen"] and sw["lr"] == max(lrs) and len(lrs) > 1})
    if edge:
        lines.append(
            f"- The sweep chose its largest rate ({max(lrs)}) somewhere for {', '.join(edge)}: a larger rate might "
            "have done better there (a rate at the edge of a sweep is a lower bound on what tuning gives)."
        )
    if results.get("pending"):
        lines.append(f"- {len(results['pending'])} runs did not run in this invocation; run the study again.")
    lines.append(
        "- The chrono arms are told the lag: T_max is the sequence length. Whether a generic long-memory "
        "initialization (a fixed large forget bias) does as well without that knowledge, and how far the "
        "default initialization is from learning these tasks with more updates, is not measured here."
    )
    lines.append(
        "- HS97 trained online (one sequence per update, 74,000 updates at T = 100) to a stopping rule; we "
        "train in batches for a fixed budget with Adam, so the comparison with their sequence count is "
        "approximate."
    )
    return lines
