"""Truncated backpropagation through time: the one chunked train step.

A batch ``x`` of shape (batch, T, ...) is cut into chunks of ``K`` steps. The
recurrent state flows from one chunk into the next as a *value* (no gradient
through it) and the optimizer updates the weights after every chunk. ``K=None``
("full") is ordinary BPTT: one chunk, one update per batch.

How the state is carried without changing any model: every recurrent layer of
the zoo (:class:`zoo.layers.CarriedState`) takes a :class:`zoo.layers.StateSlot`
for the duration of ``fit``, a variable of dynamic batch size per state tensor.
The layer reads its initial state from the slot and writes its final state back,
so a variable read is where the gradient stops (this is ``stop_gradient``).

* ``stream=False`` (default): every batch starts from a zero state; the state
  carries only across the chunks of one batch.
* ``stream=True``: consecutive batches continue the same streams (row i of
  batch n+1 follows row i of batch n), so the state also carries across
  batches; it is reset at the start of every epoch and of every validation
  pass, and whenever the batch size changes.

Which loss applies: targets with a time axis (the model output has rank 3,
e.g. language models) are sliced with the chunk, so every chunk has its own
loss and update. Sequence-summary models (output (batch, classes)) have one
label per sequence: only the final chunk sees it. The earlier chunks just
advance the state (a forward pass, no update), so ``K`` bounds how many of the
last steps the label's gradient reaches.

The logged ``loss`` is Keras's running mean over the updates (chunks) of the
epoch, each weighted by its batch size.

Bidirectional layers read the future and ``UnsharedRNN`` has weights tied to
absolute positions; both refuse chunking and streaming with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import tree

from zoo.errors import ConfigError
from zoo.layers import CarriedState, StateSlot, UnsharedRNN

Bptt = int | None  # chunk length; None = full BPTT


# ----------------------------------------------------------------- schedule
@dataclass(frozen=True)
class BpttSchedule:
    """Chunk length per epoch: ``stages`` is ``[(K or None, epochs or None), ...]``.

    The last stage's ``epochs`` may be None ("for the rest"); after the last
    stage its ``K`` stays in force.
    """

    stages: tuple[tuple[Bptt, int | None], ...]

    def k_for(self, epoch: int) -> Bptt:
        """Chunk length for the 0-based ``epoch``."""
        start = 0
        for k, n in self.stages:
            if n is None or epoch < start + n:
                return k
            start += n
        return self.stages[-1][0]

    @property
    def truncates(self) -> bool:
        return any(k is not None for k, _ in self.stages)

    def __str__(self) -> str:
        return ",".join(("full" if k is None else str(k)) + ("" if n is None else f":{n}") for k, n in self.stages)


def _parse_k(text: str, where: str) -> Bptt:
    text = text.strip().lower()
    if text == "full":
        return None
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k <= 0:
        # One sentence for a single bad value; a schedule also says which stage is wrong.
        hint = "" if text == where.strip().lower() else f"Its stage K {text!r} is neither"
        raise ConfigError(
            "bptt", where, "a positive integer number of steps, 'full', or stages like '1:2,5:2,full'", hint
        )
    return k


def parse_bptt(value) -> BpttSchedule:
    """``None``/"full" -> full BPTT; ``K`` -> K throughout; "1:2,5:2,full" -> a curriculum.

    A schedule is comma-separated ``K:epochs`` stages; the last stage may omit
    ``:epochs``. A ``BpttSchedule`` or a list of ``(K, epochs)`` pairs is
    accepted as is.
    """
    if isinstance(value, BpttSchedule):
        return value
    if value is None:
        return BpttSchedule(((None, None),))
    if isinstance(value, bool):
        raise ConfigError("bptt", value, "a positive integer, 'full' or a schedule like '1:2,5:2,full'")
    if isinstance(value, int):
        return BpttSchedule(((_parse_k(str(value), str(value)), None),))
    if isinstance(value, (list, tuple)):
        stages = tuple((_parse_k(str(k), str(value)) if k is not None else None, n) for k, n in value)
    else:
        text = str(value)
        stages = []
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ConfigError("bptt", value, "a chunk length such as '20' or a schedule such as '1:2,5:2,20:3,full'")
        for i, part in enumerate(parts):
            k_text, sep, n_text = part.partition(":")
            n = None
            if sep:
                try:
                    n = int(n_text)
                except ValueError:
                    n = 0
                if n <= 0:
                    raise ConfigError(
                        "bptt", text, "K:epochs stages with a positive number of epochs", f"Stage {part!r} has none"
                    )
            elif i != len(parts) - 1:
                raise ConfigError(
                    "bptt", text, "K:epochs stages (only the last may omit :epochs)", f"Stage {part!r} has no epochs"
                )
            stages.append((_parse_k(k_text, text), n))
        stages = tuple(stages)
    return BpttSchedule(stages)


# ----------------------------------------------------------- state carrying
def _walk(layer):
    yield layer
    for child in getattr(layer, "layers", ()):  # nested functional / sequential models
        yield from _walk(child)


def recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    """The Keras RNN layers of ``model`` (searching nested models)."""
    return [la for la in _walk(model) if isinstance(la, keras.layers.RNN)]


class StateCarrier:
    """Carries the state of a model's recurrent layers from one call into the next while attached."""

    def __init__(self, model: keras.Model):
        for layer in _walk(model):
            if isinstance(layer, keras.layers.Bidirectional):
                raise ConfigError(
                    "bptt",
                    "a truncation or stream mode",
                    "'full' without streaming for a bidirectional model",
                    f"Layer {layer.name!r} is bidirectional: its backward direction reads the future, so its "
                    "state cannot be carried into the next chunk. Use a unidirectional model (lstm, stacked_lstm, "
                    "gru, simple_rnn) to truncate or stream",
                )
            if isinstance(layer, UnsharedRNN):
                raise ConfigError(
                    "bptt",
                    "a truncation or stream mode",
                    "'full' for unshared_rnn",
                    f"Layer {layer.name!r} (unshared_rnn) has weights tied to absolute time steps and carries no "
                    "state, so it cannot be trained in chunks or streams",
                )
        self.layers = recurrent_layers(model)
        if not self.layers:
            raise ConfigError("bptt", "a truncation or stream mode", "'full' for a model without recurrent layers")
        foreign = [la.name for la in self.layers if not isinstance(la, CarriedState)]
        if foreign:
            raise ConfigError(
                "bptt",
                "a truncation or stream mode",
                "used with the zoo's recurrent layers",
                f"Layers {foreign} are not zoo layers (zoo.layers.FusedLSTM, FusedGRU, CarriedSimpleRNN), which "
                "carry state across chunks; build the body with zoo.apply",
            )
        self.slots: list[StateSlot] = [layer.new_state_slot() for layer in self.layers]

    def attach(self) -> None:
        for layer, slot in zip(self.layers, self.slots, strict=True):
            layer.attach_state(slot)

    def detach(self) -> None:
        for layer in self.layers:
            layer.attach_state(None)

    def forget(self) -> None:
        """Drop the carried state (eagerly); the next batch starts from zeros."""
        for slot in self.slots:
            slot.forget()

    def begin_batch(self, batch_size, carry: bool) -> None:
        """Zero the state, or keep it when ``carry`` and the batch size matches."""
        for layer, slot in zip(self.layers, self.slots, strict=True):
            for v, zero in zip(slot.variables, layer.get_initial_state(batch_size), strict=True):
                zero = tf.cast(zero, v.dtype)
                if carry:
                    keep = tf.equal(tf.shape(v)[0], batch_size)
                    v.assign(tf.cond(keep, lambda v=v: tf.identity(v), lambda z=zero: z))
                else:
                    v.assign(zero)


# --------------------------------------------------------------- the step
def _time_slice(tensor, start, size):
    """``tensor[:, start:start+size]`` on every tensor with a time axis."""
    return tree.map_structure(lambda t: t if t is None or len(t.shape) < 2 else t[:, start : start + size], tensor)


def per_step_targets(model: keras.Model) -> bool:
    """True when the (first) output has a time axis: language-model style targets."""
    return len(tree.flatten(model.outputs)[0].shape) == 3


UpdateFn = Callable[[list], dict]  # gradients -> stats (scalars/vectors to average over chunks)


def batch_size(x):
    """The batch size of the (possibly nested) inputs ``x``, as a tensor."""
    return tf.shape(next(i for i in tree.flatten(x) if i is not None))[0]


def chunk_loss_and_grads(model: keras.Model, x, y, sample_weight):
    """Forward one chunk under a tape; track the loss (in the compiled model's ``loss`` metric, as
    Keras's own step does); return (y_pred, gradients)."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        for metric in model.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=batch_size(x))
        if model.optimizer is not None:
            loss = model.optimizer.scale_loss(loss)
    return y_pred, tape.gradient(loss, model.trainable_weights)


def run_chunks(model: keras.Model, x, y, sample_weight, k: Bptt, update: UpdateFn, *, per_step: bool) -> dict:
    """The truncated-BPTT core: forward chunk by chunk, ``update(grads)`` after each.

    Returns the mean over the updates of what ``update`` returned. The caller
    has set the incoming state (``StateCarrier.begin_batch``).
    """

    def one(xc, yc, swc):
        y_pred, grads = chunk_loss_and_grads(model, xc, yc, swc)
        stats = update(grads)
        model.compute_metrics(xc, yc, y_pred, sample_weight=swc)
        return stats

    if k is None:
        return one(x, y, sample_weight)
    length = tf.shape(tree.flatten(x)[0])[1]
    n = (length + k - 1) // k
    if not per_step:
        # Sequence-summary targets: only the final chunk has a loss. The earlier
        # ones advance the carried state (forward only, no update).
        last = (n - 1) * k

        def advance(i):
            model(_time_slice(x, i * k, k), training=True)
            return (i + 1,)

        tf.while_loop(lambda i: i < n - 1, advance, (tf.constant(0),))
        return one(_time_slice(x, last, length - last), y, sample_weight)

    def sl(t, i):
        return _time_slice(t, i * k, k) if t is not None and len(t.shape) >= 2 else t

    def body(i, total):
        stats = one(sl(x, i), sl(y, i), sl(sample_weight, i))
        return i + 1, tree.map_structure(tf.add, total, stats)

    first = one(sl(x, 0), sl(y, 0), sl(sample_weight, 0))
    _, total = tf.while_loop(lambda i, _: i < n, body, (tf.constant(1), first))
    return tree.map_structure(lambda t: t / tf.cast(n, t.dtype), total)


__all__: Sequence[str] = [
    "BpttSchedule",
    "StateCarrier",
    "batch_size",
    "chunk_loss_and_grads",
    "parse_bptt",
    "per_step_targets",
    "recurrent_layers",
    "run_chunks",
]
