"""The faster training path (``ModelConfig(dtype="mixed_bfloat16")``, ``--dtype``) learns like the
float32 reference: same loss curve within tolerance, bf16 really used inside, float32 outside."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import training

VOCAB, SEQ = 12, 24


def _char_lm(model: str, dtype: str) -> keras.Model:
    keras.utils.set_random_seed(7)  # same initial weights for both precisions
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 8)(inputs)
    config = zoo.ModelConfig(model, units=32, return_sequences=True, dtype=dtype)
    return zoo.SeqModel(inputs, keras.layers.Dense(VOCAB)(zoo.apply(config, x)))


def _data() -> tf.data.Dataset:
    """Learnable streams: each row counts up by a row-specific stride modulo VOCAB."""
    rng = np.random.default_rng(0)
    start, stride = rng.integers(0, VOCAB, (256, 1)), rng.integers(1, 4, (256, 1))
    ids = ((start + stride * np.arange(SEQ + 1)) % VOCAB).astype("int32")
    return tf.data.Dataset.from_tensor_slices((ids[:, :-1], ids[:, 1:])).batch(32)


def _loss_curve(model: str, dtype: str, bptt=None) -> np.ndarray:
    net = _char_lm(model, dtype)
    training.compile_model(net, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), learning_rate=1e-2)
    history = training.fit(net, _data(), epochs=6, verbose=0, bptt=bptt)
    return np.asarray(history.history["loss"])


@pytest.mark.parametrize("model,bptt", [("lstm", None), ("gru", None), ("lstm", 8)])
def test_bfloat16_path_follows_the_float32_loss_curve(model, bptt):
    ref, fast = _loss_curve(model, "float32", bptt), _loss_curve(model, "mixed_bfloat16", bptt)
    assert ref[-1] < 0.5 * ref[0]  # the task is learned, so the curves have a shape to compare
    assert fast[-1] < 0.5 * fast[0]
    # Measured: the curves differ by <= 0.003 nats at every epoch; allow 1% of the starting loss.
    np.testing.assert_allclose(fast, ref, atol=0.01 * ref[0])


def test_bfloat16_body_computes_in_bf16_and_hands_float32_to_the_head():
    net = _char_lm("lstm", "mixed_bfloat16")
    rnn = next(layer for layer in net.layers if isinstance(layer, keras.layers.LSTM))
    assert (rnn.compute_dtype, rnn.variable_dtype) == ("bfloat16", "float32")
    assert rnn.cell.kernel.dtype == "float32"
    out = net(np.zeros((2, 5), "int32"))
    assert out.dtype == tf.float32
    # The stateful sampler path: float32 states in, float32 states out.
    config = zoo.ModelConfig("lstm", units=4, return_sequences=True, dtype="mixed_bfloat16")
    x, states = keras.Input((None, 3)), [keras.Input((4,)), keras.Input((4,))]
    y, new_states = zoo.apply(config, x, initial_states=states, return_states=True)
    assert [t.dtype for t in (y, *new_states)] == ["float32"] * 3


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match="Received dtype='float16', expected one of float32, mixed_bfloat16"):
        zoo.ModelConfig("lstm", dtype="float16")
