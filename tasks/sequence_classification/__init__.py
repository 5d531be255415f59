"""Sequence classification: variable-length multivariate series (UEA/UCR ``.ts``) and text (IMDB).

    seqzoo train classify                                  # JapaneseVowels, offline, ~1 minute
    seqzoo train classify --dataset BasicMotions --model bidirectional
    seqzoo train classify --ts-train A_TRAIN.ts --ts-test A_TEST.ts
    seqzoo train classify --dataset tfds:imdb_reviews     # needs internet once

Series are zero-padded per split and masked by their lengths, so the models
never see padding and nothing is truncated (only a fixed length, which the
``unshared_rnn`` needs or ``--max-length`` asks for, pads/crops -- and says so).
Per-channel normalization is fitted on the training split only and lives inside
the model, as do the class names in the export: a server sends raw values.
The validation split is drawn (stratified) from the training file, never from test.

Export ``serve(values, lengths)``: values (batch, time, channels) float32 raw and
padded after each length with anything, lengths (batch,) int32 >= 1; returns
``probabilities`` (batch, classes), ``class_index`` and ``class_name``. Text
exports take ``serve(text)``, a (batch,) string tensor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common import (
    Formatter,
    add_model_arguments,
    add_strategy_argument,
    add_training_arguments,
    cli,
    config_from_args,
    distribution_strategy,
    fit_kwargs,
    resolve_run_dir,
    set_seed,
    strategy_scope,
    training_kwargs,
)
from tasks.sequence_classification import data as D
from tasks.sequence_classification.report import classification_metrics, confusion_png, format_confusion
from zoo.config import ModelConfig

TASK = "classify"
OBJECTIVE = ("val_accuracy", "max")
TEXT_MAX_LENGTH = 256  # tokens per review when --max-length is not given

POOLINGS = ("last", "mean")
# Chosen on JapaneseVowels (seed 0, validation + test, see the report of issue 3): 97.8% test accuracy in
# ~15 s of training on 2 idle cores. Mean pooling, input noise and cosine decay did not help there.
DEFAULTS = {
    "model": "gru", "units": 64, "dropout": 0.2, "epochs": 60, "batch_size": 16, "learning_rate": 3e-3,
    "lr_schedule": "constant", "pooling": "last", "noise": 0.0,
}


@dataclass
class ClassificationSpec:
    """What a model and an export need to know about the data."""

    kind: str  # "series" | "text"
    class_names: list[str]
    channels: int = 0  # series: features per step
    train_max_length: int = 0  # series: longest training sequence (the unshared_rnn's length)
    max_length: int | None = None  # a fixed length asked for by --max-length (text: tokens)
    mean: list[float] = field(default_factory=list)  # series: per-channel normalization (train only)
    std: list[float] = field(default_factory=list)
    vectorizer: Any = None  # text: an adapted keras TextVectorization
    embedding_dim: int = 64
    pooling: str = "last"  # the head's defaults (build_model may override)
    noise: float = 0.0

    def fixed_length(self, model: str) -> int | None:
        """The length every sequence is padded/cropped to for ``model`` (None: any length, masked)."""
        if self.max_length:
            return self.max_length
        return self.train_max_length if model == "unshared_rnn" and self.kind == "series" else None

    def to_card(self) -> dict[str, Any]:
        out = {"kind": self.kind, "class_names": self.class_names, "pooling": self.pooling}
        if self.kind == "series":
            out |= {"channels": self.channels, "train_max_length": self.train_max_length,
                    "normalization": {"mean": self.mean, "std": self.std, "fitted_on": "train split only"}}
        if self.max_length:
            out["max_length"] = self.max_length
        return out


@dataclass
class TaskData:
    """Batched ``tf.data`` splits (inputs, label index), the spec, and provenance for the card."""

    train: Any
    val: Any
    test: Any
    spec: ClassificationSpec
    provenance: dict[str, Any]


# ----------------------------------------------------------------------------- API


def build_parser(prog: str = "seqzoo train classify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=Formatter,
    )
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=D.DEFAULT_DATASET,
                   help="a bundled UEA/UCR set (japanese_vowels, BasicMotions, GunPoint, ...) or tfds:imdb_reviews")
    g.add_argument("--ts-train", default=None, help="training .ts file (with --ts-test; overrides --dataset)")
    g.add_argument("--ts-test", default=None, help="test .ts file (with --ts-train)")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the TRAINING file held out (stratified) for validation; 0 for none")
    g.add_argument("--max-length", type=int, default=None,
                   help=f"pad/crop every sequence to this many steps (default: series keep their lengths, masked; "
                        f"the unshared_rnn uses the longest training sequence; text: {TEXT_MAX_LENGTH} tokens)")
    g.add_argument("--vocab-size", type=int, default=20000, help="text: TextVectorization max_tokens")
    g.add_argument("--embedding-dim", type=int, default=64, help="text: embedding width")
    g.add_argument("--data-dir", default=None, help="text: tensorflow_datasets data_dir")
    h = parser.add_argument_group("classifier")
    h.add_argument("--pooling", choices=POOLINGS, default=DEFAULTS["pooling"],
                   help="summary of the sequence the classifier sees: the last step's output, or the mean of "
                        "all real steps' outputs (padding excluded)")
    h.add_argument("--noise", type=float, default=DEFAULTS["noise"],
                   help="series: std of Gaussian noise added to the normalized inputs while training (0: off)")
    add_model_arguments(parser, default_model=DEFAULTS["model"], default_units=DEFAULTS["units"])
    add_training_arguments(parser, epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
                           learning_rate=DEFAULTS["learning_rate"])
    h.add_argument("--lr-schedule", choices=("constant", "cosine"), default=DEFAULTS["lr_schedule"],
                        help="learning rate per epoch: constant, or cosine decay from --learning-rate to 0")
    add_strategy_argument(parser)
    parser.set_defaults(dropout=DEFAULTS["dropout"])
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if (args.ts_train is None) != (args.ts_test is None):
        raise ValueError("Pass both --ts-train and --ts-test (a training and a test .ts file), or neither")
    if not 0 <= args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if args.max_length is not None and args.max_length <= 0:
        raise ValueError(f"--max-length must be a positive integer, got {args.max_length}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")


def load_data(args: argparse.Namespace) -> TaskData:
    """The train/val/test splits of ``--dataset`` (or ``--ts-train/--ts-test``), batched."""
    _check_args(args)
    if args.ts_train is None and args.dataset.startswith(D.TFDS_PREFIX):
        return _load_text(args)
    return _load_series(args)


def _series_dataset(series: D.Series, names: list[str], spec_len: int | None, batch_size: int, shuffle_seed=None):
    import tensorflow as tf

    values, lengths = D.pad(series.values, spec_len)
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[label] for label in series.labels], np.int32)
    ds = tf.data.Dataset.from_tensor_slices(((values, lengths), labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


def _load_series(args: argparse.Namespace) -> TaskData:
    if args.ts_train is not None:
        train_path, test_path, name = Path(args.ts_train), Path(args.ts_test), Path(args.ts_train).stem
    else:
        train_path, test_path = D.bundled_paths(args.dataset)
        name = train_path.parent.name
    full, test = D.read_ts(train_path), D.read_ts(test_path)
    names = D.class_names(full.labels)
    D.check_compatible(full, test, names)
    if args.quick:  # every 4th training / 5th test case: a smoke run in seconds
        full, test = full.subset(np.arange(0, len(full.labels), 4)), test.subset(np.arange(0, len(test.labels), 5))
    train_idx, val_idx = D.stratified_split(full.labels, args.val_fraction, args.seed)
    train, val = full.subset(np.sort(train_idx)), full.subset(np.sort(val_idx))
    norm = D.Normalizer.fit(train.values)
    spec = ClassificationSpec("series", names, channels=full.channels, train_max_length=int(train.lengths.max()),
                              max_length=args.max_length, mean=norm.mean.tolist(), std=norm.std.tolist(),
                              pooling=args.pooling, noise=args.noise)
    length = spec.fixed_length(args.model)  # the model fits lengths itself; data is only padded
    all_lengths = np.concatenate([full.lengths, test.lengths])
    provenance = {
        "dataset": name, "train_file": str(train_path), "test_file": str(test_path),
        "train": len(train.labels), "val": len(val.labels), "test": len(test.labels),
        "classes": len(names), "channels": full.channels,
        "lengths": f"{int(all_lengths.min())}-{int(all_lengths.max())}",
        "val_split": f"{args.val_fraction:g} of the training file, stratified, seed {args.seed}",
        "quick": bool(args.quick),
    }
    if length is not None:
        cropped = int((test.lengths > length).sum() + (full.lengths > length).sum())
        why = "--max-length" if args.max_length else "unshared_rnn has weights for a fixed number of steps"
        print(f"Fixed length {length} ({why}): shorter sequences are zero-padded and masked, "
              f"{cropped} longer train/val/test sequences keep only their first {length} steps.")
        provenance["fixed_length"] = length
    bs = args.batch_size
    return TaskData(
        train=_series_dataset(train, names, None, bs, shuffle_seed=args.seed),
        val=_series_dataset(val, names, None, bs) if len(val.labels) else None,
        test=_series_dataset(test, names, None, bs),
        spec=spec,
        provenance=provenance,
    )


def _load_text(args: argparse.Namespace) -> TaskData:
    import keras

    name = args.dataset[len(D.TFDS_PREFIX):]
    train, val, test, names = D.load_tfds_text(name, args.data_dir, args.quick, args.val_fraction)
    length = args.max_length or TEXT_MAX_LENGTH
    print(f"Text: each review is cut to its first {length} tokens and padded (masked) to that length (--max-length).")
    vectorizer = keras.layers.TextVectorization(max_tokens=args.vocab_size, output_sequence_length=length,
                                                name="vectorize")
    vectorizer.adapt(train.map(lambda text, label: text).batch(256))
    spec = ClassificationSpec("text", names, max_length=length, vectorizer=vectorizer,
                              embedding_dim=args.embedding_dim, pooling=args.pooling)
    provenance = {"dataset": args.dataset, "classes": len(names), "vocabulary": vectorizer.vocabulary_size(),
                  "max_length_tokens": length, "val_split": f"{args.val_fraction:g} of tfds 'train'",
                  "quick": bool(args.quick)}
    bs = args.batch_size
    return TaskData(
        train=train.shuffle(10000, seed=args.seed).batch(bs).prefetch(2),
        val=None if val is None else val.batch(bs).prefetch(2),
        test=test.batch(bs).prefetch(2),
        spec=spec,
        provenance=provenance,
    )


def build_model(config: ModelConfig, data: TaskData, *, pooling: str | None = None, noise: float | None = None):
    """Inputs + normalization + length mask + ``zoo.apply`` body + pooling + softmax head (uncompiled).

    ``pooling``/``noise`` default to ``data.spec``'s (the command line's) choices.
    """
    import keras

    import zoo
    from tasks.sequence_classification.layers import FitLength, LengthMask

    spec = data.spec
    pooling = spec.pooling if pooling is None else pooling
    noise = spec.noise if noise is None else noise
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    config = config.replace(return_sequences=pooling != "last")
    if spec.kind == "text":
        text = keras.Input(shape=(), dtype="string", name="text")
        tokens = spec.vectorizer(text)  # (batch, max_length) int, 0 = padding
        x = keras.layers.Embedding(spec.vectorizer.vocabulary_size(), spec.embedding_dim, mask_zero=True,
                                   name="embedding")(tokens)
        inputs = [text]
    else:
        values = keras.Input(shape=(None, spec.channels), name="values")  # (batch, time, channels), raw
        lengths = keras.Input(shape=(), dtype="int32", name="lengths")  # (batch,)
        x = keras.layers.Normalization(mean=spec.mean, variance=np.square(spec.std), name="normalize")(values)
        if noise:
            x = keras.layers.GaussianNoise(noise, name="noise")(x)  # training only
        length = spec.fixed_length(config.model)
        if length is not None:
            x = FitLength(length, name="fit_length")(x)  # (batch, T, channels)
        x = LengthMask(name="length_mask")([x, lengths])
        inputs = [values, lengths]
    x = zoo.apply(config, x)  # (batch, units') or (batch, time, units') to pool
    if pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)  # masked steps excluded
    probs = keras.layers.Dense(len(spec.class_names), activation="softmax", name="classes")(x)
    return keras.Model(inputs, probs, name=f"classify_{config.model}")


def compile(model, data: TaskData, **training_kwargs):  # noqa: A001 (the task API's name)
    """Sparse categorical cross-entropy and accuracy through ``zoo.training.compile_model``."""
    from zoo.training import compile_model

    return compile_model(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"], **training_kwargs)


def predict(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, true label indices) over a batched dataset."""
    probs, labels = [], []
    for inputs, y in dataset:
        probs.append(np.asarray(model(inputs, training=False)))
        labels.append(np.asarray(y))
    return np.concatenate(probs), np.concatenate(labels)


def endpoints(model, spec: ClassificationSpec) -> dict:
    """The ``serve`` signature: raw padded values + lengths (or text) -> probabilities and class."""
    import tensorflow as tf

    names = tf.constant(spec.class_names)

    def outputs(probs):
        index = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {"probabilities": probs, "class_index": index, "class_name": tf.gather(names, index)}

    if spec.kind == "text":
        return {"serve": (lambda text: outputs(model(text, training=False)),
                          [tf.TensorSpec((None,), tf.string, name="text")])}

    def serve(values, lengths):
        checks = [
            tf.debugging.assert_positive(lengths, message="every sequence needs length >= 1 (an all-padding "
                                                          "sequence has nothing to classify)"),
            tf.debugging.assert_less_equal(lengths, tf.shape(values, out_type=tf.int32)[1],
                                           message="a length exceeds the padded time axis of values"),
        ]
        with tf.control_dependencies(checks):
            return outputs(model([values, lengths], training=False))

    return {"serve": (serve, [tf.TensorSpec((None, None, spec.channels), tf.float32, name="values"),
                              tf.TensorSpec((None,), tf.int32, name="lengths")])}


def _callbacks(args: argparse.Namespace, epochs: int) -> list:
    import math

    import keras

    if args.lr_schedule == "cosine":
        lr = args.learning_rate
        return [keras.callbacks.LearningRateScheduler(lambda e: lr * 0.5 * (1 + math.cos(math.pi * e / epochs)))]
    return []


def train_and_evaluate(args: argparse.Namespace, *, verbose: int | str = "auto") -> dict[str, Any]:
    """The whole run without printing the summary; returns metrics, paths and timing."""
    from tasks.export import export, saved_models_root
    from zoo.training import fit

    strategy = distribution_strategy(getattr(args, "strategy", "none"))  # first: before any TensorFlow op
    set_seed(args.seed)
    start = time.perf_counter()
    config = config_from_args(args, return_sequences=False)
    data = load_data(args)
    with strategy_scope(args):  # --strategy: variables mirrored over the replicas
        model = compile(build_model(config, data), data, **training_kwargs(args))
    epochs = 1 if args.quick else args.epochs
    folder = resolve_run_dir(args, TASK, config.model)
    history = fit(model, data.train, data.val, epochs=epochs, run_dir=folder, callbacks=_callbacks(args, epochs),
                  verbose=verbose, **fit_kwargs(args))
    probs, labels = predict(model, data.test)
    names = data.spec.class_names
    metrics = classification_metrics(labels, probs.argmax(-1), len(names))
    if data.val is not None:
        metrics["val_accuracy"] = float(history.history["val_accuracy"][-1])
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    title = f"{data.provenance['dataset']} / {config.model}: accuracy {metrics['accuracy']:.2%}"
    png = confusion_png(metrics["confusion_matrix"], names, title)
    (folder / "confusion_matrix.png").write_bytes(png)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    result = {"config": config, "data": data, "model": model, "metrics": metrics, "run_dir": folder,
              "export": None, "params": int(model.count_params()),
              "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync)}
    if not args.no_export:
        card = {
            "data": data.provenance,
            "spec": data.spec.to_card(),
            "metrics": {k: v for k, v in metrics.items() if k != "train_seconds"},
            "hyperparameters": {"epochs": epochs, "batch_size": args.batch_size, "seed": args.seed,
                                "lr_schedule": args.lr_schedule, "noise": args.noise,
                                **training_kwargs(args)},
            "serve": ("serve(values float32 (batch, time, channels) raw, lengths int32 (batch,) >= 1) -> "
                      "probabilities, class_index, class_name" if data.spec.kind == "series"
                      else "serve(text string (batch,)) -> probabilities, class_index, class_name"),
        }
        result["export"] = export(model, task=TASK, config=config, root=saved_models_root(args.saved_models),
                                  endpoints=endpoints(model, data.spec), card=card,
                                  files={"labels.txt": "\n".join(names) + "\n", "confusion_matrix.png": png})
    return result


def run(args: argparse.Namespace) -> int:
    result = train_and_evaluate(args)
    m, data, config = result["metrics"], result["data"], result["config"]
    p = data.provenance
    print(f"\n=== {p['dataset']}: {config.model} ({config.units} units x {config.num_layers} layer(s), "
          f"{result['params']:,} parameters), {m['train_seconds']:.0f} s ===")
    print(f"data: {D.describe(p)}")
    if getattr(args, "strategy", "none") != "none":
        print(f"strategy: {args.strategy}, {result['replicas']} replica(s) in sync")
    print(f"test accuracy {m['accuracy']:.2%}   macro-F1 {m['macro_f1']:.2%}   "
          f"(majority-class baseline {m['majority_baseline_accuracy']:.2%}, {m['n_test']} test sequences)")
    if "val_accuracy" in m:
        print(f"validation accuracy (last epoch) {m['val_accuracy']:.2%}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_confusion(m["confusion_matrix"], data.spec.class_names))
    print(f"confusion matrix PNG: {result['run_dir'] / 'confusion_matrix.png'}")
    print(f"logs: {result['run_dir']} (history.csv, grad_norms.csv, metrics.json, tensorboard/)")
    if result["export"] is not None:
        print(f"export: {result['export']}  (serve signature 'serve'; card.json, labels.txt, confusion_matrix.png)")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo train classify") -> int:
    return cli(run, build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main())
