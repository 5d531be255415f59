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

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.common import (
    build_in_scope,
    check_folders,
    distribution_strategy,
    finish_run,
    resolve_run_dir,
    schedule_callbacks,
    set_seed,
    strategy_scope,
)
from tasks.options import (
    Result,
    TaskOptions,
    default,
    fraction,
    main_for,
    non_negative_int,
    one_of,
    option,
    positive_float,
    positive_int,
)
from tasks.sequence_classification import data as D
from tasks.sequence_classification.report import classification_metrics, confusion_png
from zoo import files
from zoo.config import ModelConfig
from zoo.errors import ConfigError

TASK = "classify"
OBJECTIVE = ("val_accuracy", "max")
TEXT_MAX_LENGTH = 256  # tokens per review when --max-length is not given

POOLINGS = ("last", "mean")
DISTILL_TEMPERATURE = 4.0  # the distill_temperature default: a usual choice in the distillation literature


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
    conv_filters: int = 0
    fcn_filters: int = 0
    squeeze_excite: bool = False
    resample: bool = False  # series: every sequence stretched onto resample_length() steps inside the model
    dimension_shuffle: bool = False  # series: the recurrent body reads channels as steps (needs resample)

    def fixed_length(self, model: str) -> int | None:
        """The length every sequence is padded/cropped to for ``model`` (None: any length, masked)."""
        if self.resample:
            return None  # the model resamples every sequence itself
        if self.max_length:
            return self.max_length
        return self.train_max_length if model == "unshared_rnn" and self.kind == "series" else None

    def resample_length(self) -> int:
        """The steps ``resample`` stretches every sequence onto: max_length, else the longest training one."""
        return self.max_length or self.train_max_length

    def to_card(self) -> dict[str, Any]:
        out = {"kind": self.kind, "class_names": self.class_names, "pooling": self.pooling}
        for name in ("conv_filters", "fcn_filters", "squeeze_excite", "dimension_shuffle"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.resample:
            out["resampled_to"] = self.resample_length()
        if self.kind == "series":
            out |= {
                "channels": self.channels,
                "train_max_length": self.train_max_length,
                "normalization": {"mean": self.mean, "std": self.std, "fitted_on": "train split only"},
            }
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


@dataclass(frozen=True)
class Options(TaskOptions):
    """Every setting of ``seqzoo train classify``; see :class:`tasks.options.TaskOptions` for the shared ones."""

    # --preset best: the recipe benchmarks/classify_select chose by repeated 5-fold cross-validation
    # inside JapaneseVowels' training file (docs/tasks.md); it trains on the whole training file.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "best": {
            "model": "bidirectional",
            "cell": "lstm",
            "units": 8,
            "dropout": 0.8,
            "pooling": "mean",
            "noise": 0.2,
            "fcn_filters": 128,
            "resample": True,
            "val_fraction": 0.0,
            "epochs": 150,
            # The updates JapaneseVowels' 270 training series get in 150 epochs (2,550); a smaller
            # set trains more epochs instead of stopping after a few hundred updates.
            "min_steps": 2500,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "lr_schedule": "cosine",
        }
    }

    # data
    dataset: str = option(
        D.DEFAULT_DATASET,
        "a bundled UEA/UCR set (japanese_vowels, BasicMotions, GunPoint, ...) or tfds:imdb_reviews",
        group="data",
    )
    ts_train: str | None = option(None, "training .ts file (with ts_test; overrides dataset)", group="data")
    ts_test: str | None = option(None, "test .ts file (with ts_train)", group="data")
    val_fraction: float = option(
        0.1, "share of the TRAINING file held out (stratified) for validation; 0 for none", group="data"
    )
    max_length: int | None = option(
        None,
        "pad/crop every sequence to this many steps (default: series keep their "
        "lengths, masked; the unshared_rnn uses the longest training sequence; text: "
        f"{TEXT_MAX_LENGTH} tokens)",
        group="data",
    )
    vocab_size: int = option(20000, "text: TextVectorization max_tokens", group="data")
    embedding_dim: int = option(64, "text: embedding width", group="data")
    data_dir: str | None = option(None, "text: tensorflow_datasets data_dir", group="data")
    # classifier
    pooling: str = option(
        "last",
        "summary of the sequence the classifier sees: the last step's output, or the "
        "mean of all real steps' outputs (padding excluded)",
        group="classifier",
        choices=POOLINGS,
    )
    noise: float = option(
        0.0, "series: std of Gaussian noise added to the normalized inputs while training (0: off)", group="classifier"
    )
    conv_filters: int = option(
        0,
        "series: filters of a Conv1D front end (kernels 5 and 3, ReLU) that the recurrent body reads, "
        "as in LSTM-FCN (0: none)",
        group="classifier",
    )
    fcn_filters: int = option(
        0,
        "series: a fully convolutional branch beside the recurrent body, as in LSTM-FCN: Conv1D blocks of "
        "F, 2F, F filters (kernels 8, 5, 3) with batch norm and ReLU, mean-pooled and joined to the body's "
        "summary before the softmax (0: none; the published FCN uses 128)",
        group="classifier",
    )
    squeeze_excite: bool = option(
        False,
        "series: squeeze-and-excitation after the first two blocks of the fcn_filters branch, as in "
        "MLSTM-FCN: each channel scaled by a gate computed from every channel's mean over time",
        group="classifier",
    )
    resample: bool = option(
        False,
        "series: stretch every sequence onto max_length evenly spaced steps (default: the longest training "
        "sequence's) by linear interpolation inside the model, the published FCN/ResNet preprocessing of "
        "variable-length sets, instead of padding and masking",
        group="data",
    )
    dimension_shuffle: bool = option(
        False,
        "series: the recurrent body reads the resampled series transposed, one step per channel with every "
        "time step as its features, as in MLSTM-FCN (needs resample; the FCN branch still reads time as steps)",
        group="classifier",
    )
    teachers: int = option(
        0,
        "knowledge distillation: first train this many models of the same settings (seeds seed+1, seed+2, "
        "...), then train the exported model toward their averaged class probabilities on each training "
        "sequence, softened by distill_temperature, instead of the labels; costs teachers+1 trainings (0: off)",
        group="classifier",
    )
    distill_temperature: float = option(
        DISTILL_TEMPERATURE,
        "with teachers: the temperature both the teachers' averaged probabilities and the model's own are "
        "softened to in the distillation loss (1: the probabilities as they are)",
        group="classifier",
    )
    # Defaults from earlier tuning on JapaneseVowels, which also looked at test accuracy: to be
    # re-chosen on a validation split only.
    model: str = default("model", "gru")
    dropout: float = default("dropout", 0.2)
    epochs: int = default("epochs", 60)
    min_steps: int = option(
        0,
        "train at least this many optimizer steps: epochs is raised to ceil(min_steps / steps per epoch) "
        "when the training split is small (0: exactly epochs)",
    )
    batch_size: int = default("batch_size", 16)
    learning_rate: float = default("learning_rate", 3e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.ts_train is None) != (self.ts_test is None):
            raise ConfigError(
                "ts_test" if self.ts_test is None else "ts_train",
                None,
                "set together with its twin",
                "Pass both ts_train and ts_test (a training and a test .ts file), or neither",
            )
        fraction("val_fraction", self.val_fraction)
        positive_int("max_length", self.max_length, optional=True)
        positive_int("vocab_size", self.vocab_size)
        positive_int("embedding_dim", self.embedding_dim)
        one_of("pooling", self.pooling, POOLINGS)
        non_negative_int("conv_filters", self.conv_filters)
        non_negative_int("fcn_filters", self.fcn_filters)
        non_negative_int("min_steps", self.min_steps)
        if self.squeeze_excite and not self.fcn_filters:
            raise ConfigError(
                "squeeze_excite",
                self.squeeze_excite,
                "off without an FCN branch",
                "It gates that branch's channels: set fcn_filters (--fcn-filters) too",
            )
        if self.dimension_shuffle and not self.resample:
            raise ConfigError(
                "dimension_shuffle",
                self.dimension_shuffle,
                "off without resample",
                "The transposed series has one feature per time step, so every sequence needs the same "
                "length: set resample (--resample) too",
            )
        if self.resample and self.max_length == 1:
            raise ConfigError("max_length", self.max_length, "at least 2 when resample is on (steps to stretch onto)")
        non_negative_int("teachers", self.teachers)
        positive_float("distill_temperature", self.distill_temperature)
        if self.distill_temperature != DISTILL_TEMPERATURE and not self.teachers:
            raise ConfigError(
                "distill_temperature",
                self.distill_temperature,
                "left at its default without teachers",
                "It softens the teachers' predictions: set teachers (--teachers) too",
            )
        # Keras's GaussianNoise takes a std in [0, 1); refuse the rest here, where the field has its name.
        fraction("noise", self.noise)


def load_data(options: Options) -> TaskData:
    """The train/val/test splits of ``dataset`` (or ``ts_train``/``ts_test``), batched."""
    if options.ts_train is None and options.dataset.startswith(D.TFDS_PREFIX):
        return _load_text(options)
    return _load_series(options)


def batched(inputs, targets, batch_size: int, shuffle_seed: int | None = None):
    """A ``tf.data`` pipeline of ``(inputs, targets)`` in batches, reshuffled every epoch from ``shuffle_seed``
    (None: in order)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(targets), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


def _series_dataset(series: D.Series, names: list[str], spec_len: int | None, batch_size: int, shuffle_seed=None):
    values, lengths = D.pad(series.values, spec_len)
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[label] for label in series.labels], np.int32)
    return batched((values, lengths), labels, batch_size, shuffle_seed)


def _load_series(options: Options) -> TaskData:
    if options.ts_train is not None:
        train_path, test_path, name = Path(options.ts_train), Path(options.ts_test), Path(options.ts_train).stem
    else:
        train_path, test_path = D.bundled_paths(options.dataset)
        name = train_path.parent.name
    full, test = D.read_ts(train_path), D.read_ts(test_path)
    names = D.class_names(full.labels)
    D.check_compatible(full, test, names)
    if options.small_data:  # every 4th training / 5th test case: a smoke run in seconds
        full, test = full.subset(np.arange(0, len(full.labels), 4)), test.subset(np.arange(0, len(test.labels), 5))
    train_idx, val_idx = D.stratified_split(full.labels, options.val_fraction, options.seed)
    train, val = full.subset(np.sort(train_idx)), full.subset(np.sort(val_idx))
    norm = D.Normalizer.fit(train.values)
    spec = ClassificationSpec(
        "series",
        names,
        channels=full.channels,
        train_max_length=int(train.lengths.max()),
        max_length=options.max_length,
        mean=norm.mean.tolist(),
        std=norm.std.tolist(),
        pooling=options.pooling,
        noise=options.noise,
        conv_filters=options.conv_filters,
        fcn_filters=options.fcn_filters,
        squeeze_excite=options.squeeze_excite,
        resample=options.resample,
        dimension_shuffle=options.dimension_shuffle,
    )
    length = spec.fixed_length(options.model)  # the model fits lengths itself; data is only padded
    all_lengths = np.concatenate([full.lengths, test.lengths])
    provenance = {
        "dataset": name,
        "train_file": str(train_path),
        "test_file": str(test_path),
        "train": len(train.labels),
        "val": len(val.labels),
        "test": len(test.labels),
        "classes": len(names),
        "channels": full.channels,
        "lengths": f"{int(all_lengths.min())}-{int(all_lengths.max())}",
        "val_split": f"{options.val_fraction:g} of the training file, stratified, seed {options.seed}",
        "quick": bool(options.small_data),
    }
    if length is not None:
        cropped = int((test.lengths > length).sum() + (full.lengths > length).sum())
        why = "max_length" if options.max_length else "unshared_rnn has weights for a fixed number of steps"
        print(
            f"Fixed length {length} ({why}): shorter sequences are zero-padded and masked, "
            f"{cropped} longer train/val/test sequences keep only their first {length} steps."
        )
        provenance["fixed_length"] = length
    if options.resample:
        provenance["resampled_to"] = spec.resample_length()  # by linear interpolation, inside the model
    bs = options.batch_size
    return TaskData(
        train=_series_dataset(train, names, None, bs, shuffle_seed=options.seed),
        val=_series_dataset(val, names, None, bs) if len(val.labels) else None,
        test=_series_dataset(test, names, None, bs),
        spec=spec,
        provenance=provenance,
    )


def _load_text(options: Options) -> TaskData:
    import keras

    # squeeze_excite needs fcn_filters and dimension_shuffle needs resample: Options refuses them alone
    for name in ("conv_filters", "fcn_filters", "resample"):
        if getattr(options, name):
            raise ConfigError(name, getattr(options, name), "left at its default for text", "It applies to series only")

    name = options.dataset[len(D.TFDS_PREFIX) :]
    train, val, test, names = D.load_tfds_text(name, options.data_dir, options.small_data, options.val_fraction)
    length = options.max_length or TEXT_MAX_LENGTH
    print(f"Text: each review is cut to its first {length} tokens and padded (masked) to that length (max_length).")
    vectorizer = keras.layers.TextVectorization(
        max_tokens=options.vocab_size, output_sequence_length=length, name="vectorize"
    )
    vectorizer.adapt(train.map(lambda text, label: text).batch(256))
    spec = ClassificationSpec(
        "text",
        names,
        max_length=length,
        vectorizer=vectorizer,
        embedding_dim=options.embedding_dim,
        pooling=options.pooling,
    )
    provenance = {
        "dataset": options.dataset,
        "classes": len(names),
        "vocabulary": vectorizer.vocabulary_size(),
        "max_length_tokens": length,
        "val_split": f"{options.val_fraction:g} of tfds 'train'",
        "quick": bool(options.small_data),
    }
    bs = options.batch_size
    return TaskData(
        train=train.shuffle(10000, seed=options.seed).batch(bs).prefetch(2),
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
    from tasks.sequence_classification.layers import ConvFrontEnd, FCNBranch, FitLength, LengthMask, Resample

    spec = data.spec
    pooling = spec.pooling if pooling is None else pooling
    noise = spec.noise if noise is None else noise
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    config = config.replace(return_sequences=pooling != "last")
    branch = None  # LSTM-FCN's convolutional summary, joined to the body's before the head
    if spec.kind == "text":
        text = keras.Input(shape=(), dtype="string", name="text")
        tokens = spec.vectorizer(text)  # (batch, max_length) int, 0 = padding
        x = keras.layers.Embedding(
            spec.vectorizer.vocabulary_size(), spec.embedding_dim, mask_zero=True, name="embedding"
        )(tokens)
        inputs = [text]
    else:
        values = keras.Input(shape=(None, spec.channels), name="values")  # (batch, time, channels), raw
        lengths = keras.Input(shape=(), dtype="int32", name="lengths")  # (batch,)
        x = keras.layers.Normalization(mean=spec.mean, variance=np.square(spec.std), name="normalize")(values)
        if noise:
            x = keras.layers.GaussianNoise(noise, name="noise")(x)  # training only
        if spec.resample:
            x = Resample(spec.resample_length(), name="resample")([x, lengths])  # (batch, steps, channels): no padding
        else:
            length = spec.fixed_length(config.model)
            if length is not None:
                x = FitLength(length, name="fit_length")(x)  # (batch, T, channels)
            x = LengthMask(name="length_mask")([x, lengths])
        if spec.fcn_filters:
            branch = FCNBranch(spec.fcn_filters, spec.squeeze_excite, name="fcn_branch")(x)
        if spec.conv_filters:
            x = ConvFrontEnd(spec.conv_filters, name="conv_front_end")(x)
        if spec.dimension_shuffle:  # (batch, channels, steps): the body steps over channels
            x = keras.layers.Permute((2, 1), name="dimension_shuffle")(x)
        inputs = [values, lengths]
    x = zoo.apply(config, x)  # (batch, units') or (batch, time, units') to pool
    if pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)  # masked steps excluded
    if branch is not None:
        x = keras.layers.Concatenate(name="join_fcn")([x, branch])
    probs = keras.layers.Dense(len(spec.class_names), activation="softmax", name="classes")(x)
    return zoo.SeqModel(inputs, probs, name=f"classify_{config.model}")


def compile(  # noqa: A001 (the task API's name)
    model, data: TaskData, *, loss: Any = "sparse_categorical_crossentropy", **training_kwargs
):
    """``loss`` (by default sparse categorical cross-entropy) and accuracy through ``zoo.training.compile_model``."""
    from zoo.training import compile_model

    return compile_model(model, loss=loss, metrics=["accuracy"], **training_kwargs)


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
        return {
            "serve": (
                lambda text: outputs(model(text, training=False)),
                [tf.TensorSpec((None,), tf.string, name="text")],
            )
        }

    def serve(values, lengths):
        checks = [
            tf.debugging.assert_positive(
                lengths, message="every sequence needs length >= 1 (an all-padding sequence has nothing to classify)"
            ),
            tf.debugging.assert_less_equal(
                lengths,
                tf.shape(values, out_type=tf.int32)[1],
                message="a length exceeds the padded time axis of values",
            ),
        ]
        with tf.control_dependencies(checks):
            return outputs(model([values, lengths], training=False))

    return {
        "serve": (
            serve,
            [
                tf.TensorSpec((None, None, spec.channels), tf.float32, name="values"),
                tf.TensorSpec((None,), tf.int32, name="lengths"),
            ],
        )
    }


def epochs_for(options: Options, steps_per_epoch: int) -> int:
    """``options.epochs``, raised so that epochs of ``steps_per_epoch`` batches take at least
    ``options.min_steps`` steps (a count below 1, tf.data's unknown or infinite, leaves them as given)."""
    if steps_per_epoch < 1:
        return options.epochs
    return max(options.epochs, math.ceil(options.min_steps / steps_per_epoch))


def train(
    model,
    options: Options,
    data: TaskData,
    run_dir: Path,
    *,
    loss: Any = "sparse_categorical_crossentropy",
    verbose: int | str = "auto",
):
    """Compile ``model`` and fit it on ``data``'s training split into ``run_dir``, resuming what is there.

    The run stays marked ``trained`` (not ``finished``), so a resumed command reloads the weights
    and trains nothing more.
    """
    from zoo.training import fit

    with strategy_scope(options):
        compile(model, data, loss=loss, **options.training_kwargs())
        return fit(
            model,
            data.train,
            data.val,
            epochs=options.epochs,
            run_dir=run_dir,
            callbacks=schedule_callbacks(options),
            verbose=verbose,
            finish=False,
            **options.fit_kwargs(),
        )


def distilled(options: Options, config: ModelConfig, data: TaskData, folder: Path, verbose: int | str) -> TaskData:
    """Train ``options.teachers`` teachers, each into ``folder/teacher<i>``, and return ``data`` with the
    training split's labels replaced by the teachers' averaged probabilities at ``distill_temperature``,
    the validation split's by one-hot rows.

    A teacher's predictions are saved beside its checkpoint once it is trained, so an interrupted command
    resumes the teacher it stopped in and skips the ones before. The teachers never see the test split:
    it is read once, by the exported model.
    """
    import tensorflow as tf

    from tasks.sequence_classification import distill

    inputs, labels = distill.gather(data.train)
    total = np.zeros((len(labels), len(data.spec.class_names)))
    for i in range(1, options.teachers + 1):
        seed, part = (options.seed + i) % 2**32, folder / f"teacher{i}"
        saved = part / distill.PREDICTIONS
        if saved.exists() and options.resume != "never":
            if verbose:
                print(f"Teacher {i} of {options.teachers} (seed {seed}): trained before, predictions in {saved}")
            total += distill.load_predictions(saved, len(labels))
            continue
        if verbose:
            print(f"Teacher {i} of {options.teachers} (seed {seed})")
        set_seed(seed)
        teacher = build_in_scope(options, lambda: build_model(config, data))
        own_order = replace(data, train=batched(inputs, labels, options.batch_size, seed))
        train(teacher, options, own_order, part, verbose=verbose)
        predictions = np.asarray(teacher.predict(inputs, batch_size=options.batch_size, verbose=0))
        distill.save_predictions(saved, predictions)
        total += predictions
    if verbose:
        print(f"Training the exported model on {options.teachers} teachers' predictions")
    targets = distill.soften(total / options.teachers, options.distill_temperature)
    classes = len(data.spec.class_names)
    val = data.val.map(lambda x, y: (x, tf.one_hot(y, classes))) if data.val is not None else None
    # Seeded as a run without teachers: the student's shuffle order (which also depends on the global seed)
    # and its first weights are then the same whether the teachers trained in this process or not.
    set_seed(options.seed)
    return replace(data, train=batched(inputs, targets, options.batch_size, options.seed), val=val)


def run(options: Options, *, verbose: int | str = "auto") -> Result:
    """Train, evaluate on the test split and (unless ``export=False``) export; prints nothing but Keras's
    progress (``verbose``) -- :func:`report` prints the summary."""
    from tasks.export import export, saved_models_root

    strategy = distribution_strategy(options.strategy)  # first: before any TensorFlow op
    check_folders(options)
    set_seed(options.seed)
    start = time.perf_counter()
    config = options.model_config()
    data = load_data(options)
    if options.min_steps:
        options = options.replace(epochs=epochs_for(options, int(data.train.cardinality())))
    folder = resolve_run_dir(options, TASK, config.model)
    loss = "sparse_categorical_crossentropy"
    if options.teachers:
        from tasks.sequence_classification.distill import SoftTargetCrossEntropy

        data = distilled(options, config, data, folder, verbose)
        loss = SoftTargetCrossEntropy(options.distill_temperature)
    model = build_in_scope(options, lambda: build_model(config, data))  # variables mirrored over the replicas
    history = train(model, options, data, folder, loss=loss, verbose=verbose)
    probs, labels = predict(model, data.test)
    names = data.spec.class_names
    metrics = classification_metrics(labels, probs.argmax(-1), len(names))
    if data.val is not None:
        metrics["val_accuracy"] = float(history.history["val_accuracy"][-1])
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    title = f"{data.provenance['dataset']} / {config.model}: accuracy {metrics['accuracy']:.2%}"
    png = confusion_png(metrics["confusion_matrix"], names, title)
    files.write_bytes(folder / "confusion_matrix.png", png)
    files.write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    exported = None
    if options.export:
        card = {
            "data": data.provenance,
            "spec": data.spec.to_card(),
            "metrics": {k: v for k, v in metrics.items() if k != "train_seconds"},
            "hyperparameters": {
                "epochs": options.epochs,
                "min_steps": options.min_steps,
                "batch_size": options.batch_size,
                "seed": options.seed,
                "lr_schedule": options.lr_schedule,
                "noise": options.noise,
                "conv_filters": options.conv_filters,
                "fcn_filters": options.fcn_filters,
                "squeeze_excite": options.squeeze_excite,
                "resample": options.resample,
                "dimension_shuffle": options.dimension_shuffle,
                "teachers": options.teachers,
                **({"distill_temperature": options.distill_temperature} if options.teachers else {}),
                **options.training_kwargs(),
            },
            "serve": (
                "serve(values float32 (batch, time, channels) raw, lengths int32 (batch,) >= 1) -> "
                "probabilities, class_index, class_name"
                if data.spec.kind == "series"
                else "serve(text string (batch,)) -> probabilities, class_index, class_name"
            ),
        }
        exported = export(
            model,
            task=TASK,
            config=config,
            root=saved_models_root(options.saved_models),
            endpoints=endpoints(model, data.spec),
            card=card,
            files={"labels.txt": "\n".join(names) + "\n", "confusion_matrix.png": png},
            run_dir=folder,
        )
    finish_run(folder)
    baselines = {"majority_class_accuracy": metrics["majority_baseline_accuracy"]}
    return Result(
        model=model,
        history=history,
        metrics=metrics,
        baselines=baselines,
        export=exported,
        run_dir=folder,
        options=options,
        details={
            "config": config,
            "data": data,
            "params": int(model.count_params()),
            "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
        },
    )


def report(result: Result) -> None:
    """The summary ``seqzoo train classify`` prints (the confusion matrix is in metrics.json and its PNG)."""
    from tasks.terminal import print_summary

    m, p = result.metrics, result.details["data"].provenance
    lines = [f"data: {D.describe(p)}"]
    if n := result.options.teachers:
        teachers = f"{n} teacher{'s' * (n > 1)}"
        lines.append(
            f"distilled from {teachers} trained first (teacher<i>/ in the run folder; the seconds include them)"
        )
    print_summary(
        result,
        TASK,
        data=p["dataset"],
        headline=f"test accuracy {m['accuracy']:.2%} (majority-class baseline {m['majority_baseline_accuracy']:.2%}), "
        f"macro-F1 {m['macro_f1']:.2%}, {m['n_test']} test sequences",
        lines=lines,
    )


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo train classify") -> int:
    return main_for(Options, run, report, argv, prog, description="\n\n".join(__doc__.split("\n\n")[:2]))


if __name__ == "__main__":
    sys.exit(main())
