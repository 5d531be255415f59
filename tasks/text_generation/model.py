"""The textgen models: an embedding, a zoo body and a per-character softmax head (logits).

Every model predicts the next character at every position, except the bidirectional
window classifier (see :mod:`tasks.text_generation`), which predicts the one after its
window. The losses and metrics are registered with Keras so an export's ``model.keras``
loads with them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras

from zoo.errors import ConfigError

if TYPE_CHECKING:
    from tasks.text_generation.data import TaskData
    from zoo.config import ModelConfig

WINDOW_MODELS = ("unshared_rnn", "bidirectional")  # no carried state: re-feed a fixed window
LN2 = math.log(2.0)


def is_window_model(model: str) -> bool:
    return model in WINDOW_MODELS


def lm_config(config: ModelConfig) -> ModelConfig:
    """Per-position outputs, except the bidirectional window classifier (its backward direction
    would read the very character it has to predict)."""
    return config.replace(return_sequences=config.model != "bidirectional")


def check_mode(model: str, mode: str) -> None:
    """Streaming carries the recurrent state across batches: a window model has none to carry."""
    if mode == "stream" and is_window_model(model):
        raise ConfigError(
            "mode",
            mode,
            f"'random' for model {model!r}",
            f"Streaming carries the hidden state across batches, but {model!r} has no carried state",
        )


def build_model(config: ModelConfig, data: TaskData):
    """ids (batch, T) -> logits (batch, T, vocab); (batch, vocab) for the bidirectional window classifier.

    Streaming mode needs no other model: ``zoo.training.fit(stream=True)``
    carries the recurrent state across batches.
    """
    import zoo

    spec = data.spec
    config = lm_config(config)
    window = is_window_model(config.model)
    check_mode(config.model, spec["mode"])
    ids = keras.Input((spec["seq_len"] if window else None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(spec["vocab_size"], spec["embedding_dim"], name="embedding")(ids)  # (b, T, E)
    h = zoo.apply(config, x)  # (b, T, units)
    logits = keras.layers.Dense(spec["vocab_size"], name="logits")(h)
    return zoo.SeqModel(ids, logits, name=f"textgen_{config.model}")


def build_step_model(config: ModelConfig, vocab_size: int, embedding_dim: int):
    """[ids (b, T), *states] -> [logits (b, T, vocab), *new_states]: same layers/paths as ``build_model``,
    so the trained weights copy over by name."""
    import zoo

    config = lm_config(config)
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


# ----------------------------------------------------------------------------- losses and metrics


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


def compile(model, data: TaskData | None = None, **training_kwargs):  # noqa: A001 (the task API's name)
    """Sparse cross-entropy on logits (nats/char) plus bits/char and accuracy."""
    from zoo.training import compile_model

    metrics = [
        keras.metrics.MeanMetricWrapper(bits_per_char, name="bits_per_char"),
        keras.metrics.MeanMetricWrapper(next_char_accuracy, name="accuracy"),
    ]
    return compile_model(model, loss=next_char_loss, metrics=metrics, **training_kwargs)


def evaluate(model, data: TaskData, *, val_loss: float | None = None) -> dict[str, float]:
    """Loss of the stateless model on validation and test windows (fresh state per window).

    ``val_loss``: the validation loss already measured on these windows with these weights
    (the best epoch's, which early stopping restores), so it is not computed again."""
    out = {}
    for name, ds in (("val", data.val), ("test", data.test)):
        if name == "val" and val_loss is not None:
            loss = float(val_loss)
        else:
            loss = float(model.evaluate(ds, verbose=0, return_dict=True)["loss"])
        out[f"{name}_loss"] = loss
        out[f"{name}_bits_per_char"] = loss / LN2
    return out
