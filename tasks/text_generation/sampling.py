"""Sampling: one recurrent step per character, the state carried, in one XLA-compiled loop.

The randomness is numpy's ``default_rng(seed)`` and the rule is :func:`pick_next`, so a
server holding only the export's ``step``/``initial_state`` signatures reproduces the
same characters for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import keras
import numpy as np

from tasks.text_generation.data import OOV_ID
from tasks.text_generation.model import build_step_model, copy_weights, is_window_model, lm_config
from zoo.errors import ConfigError

if TYPE_CHECKING:
    from tasks.text_generation import Options


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
    """The sampler's random numbers: ``1 - default_rng(seed).random(length)``, in (0, 1] so that
    u never selects an entry with zero probability."""
    return 1.0 - np.random.default_rng(seed).random(length)


def check_sampling_args(length: int, temperature: float, top_k: int | None) -> None:
    if length <= 0:
        raise ConfigError("length", length, "a positive integer")
    if not temperature > 0:
        raise ConfigError("temperature", temperature, "> 0 (e.g. 0.8; lower is more conservative)")
    if top_k is not None and top_k < 0:
        raise ConfigError("top_k", top_k, ">= 0 (0 keeps every character)")


def check_prime(prime: str) -> None:
    """The first step needs a character to read."""
    if not prime:
        raise ConfigError("prime", prime, "at least one character")


def pad_id(vocab: list[str]) -> int:
    """Window models start from a window of newlines (OOV if the text has none): a newline
    starts a speech in the training text, so the first window looks like one."""
    return vocab.index("\n") if "\n" in vocab else OOV_ID


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
    widths = zoo.state_shapes(lm_config(config))

    def step(tok, states):
        out = step_model([tf.cast(tok, tf.int32)[:, None], *states], training=False)
        return out[0][:, 0], list(out[1:])

    def initial_state(batch):
        return [tf.zeros([batch, w]) for w in widths]

    step.model = step_model
    # The step model holds a copy of the weights: re-read them after more training.
    step.refresh = lambda: copy_weights(model, step_model)
    return step, initial_state


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
        step_fn, init = make_step(
            model, config, len(vocab), seq_len, recompute_window=recompute_window, pad_id=pad_id(vocab)
        )
        return cls(step_fn, init, vocab)

    def _loop(self, top_k: int) -> Callable:
        """The compiled loop for ``top_k`` (a Python int: it fixes the graph's shapes)."""
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

    def generate(
        self, prime: str, length: int, *, temperature: float = 1.0, top_k: int | None = None, seed: int = 0
    ) -> str:
        """``length`` characters after ``prime`` (which is not repeated in the result)."""
        check_sampling_args(length, temperature, top_k)
        check_prime(prime)
        tf = self._tf
        ids, _ = self.encode(prime)
        out = self._loop(int(top_k or 0))(
            tf.constant(ids[None]), tf.constant(uniforms(seed, length)), tf.constant(float(temperature), tf.float64)
        )
        return "".join(self.vocab[i] for i in out.numpy()[0])


class SampleAfterEpoch(keras.callbacks.Callback):
    """Samples ``options.sample_length`` characters after every epoch (printed with ``show``);
    ``last`` keeps the latest sample for the result."""

    def __init__(self, sampler: Sampler, options: Options, *, show: bool = True):
        super().__init__()
        self.sampler, self.options, self.show = sampler, options, show
        self.last: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        o = self.options
        self.sampler.refresh()  # the step model holds a copy of the weights
        self.last = self.sampler.generate(o.prime, o.sample_length, temperature=o.temperature, seed=o.seed)
        if self.show:
            print(
                f"\n--- sample after epoch {epoch + 1} (temperature {o.temperature}) ---\n{o.prime}{self.last}\n---",
                flush=True,
            )
