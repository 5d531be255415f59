"""The zoo: every model builds, trains, round-trips; masking; the unshared RNN."""

import keras
import numpy as np
import pytest

import zoo
from zoo import ModelConfig, UnsharedRNN
from zoo.config import MODEL_NAMES

T, F, UNITS = 6, 3, 5


def _config(name, **kw):
    kw.setdefault("num_layers", 2 if name == "stacked_lstm" else 1)
    return ModelConfig(name, units=UNITS, **kw)


def _classifier(config, timesteps=T):
    inputs = keras.Input((timesteps, F))
    outputs = keras.layers.Dense(2, activation="softmax")(zoo.apply(config, inputs))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_build_train_step_and_keras_round_trip(name, tmp_path):
    model = _classifier(_config(name, dropout=0.1))
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, T, F)).astype("float32")
    y = np.arange(8) % 2
    before = [w.copy() for w in model.get_weights()]
    model.train_on_batch(x, y)
    changed = [not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert any(changed), "one training step must move the weights"
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_output_shapes(name, return_sequences):
    config = _config(name, return_sequences=return_sequences)
    out = zoo.build(config, T, F)(np.zeros((2, T, F), "float32"))
    width = 2 * UNITS if name == "bidirectional" else UNITS
    assert tuple(out.shape) == ((2, T, width) if return_sequences else (2, width))


@pytest.mark.parametrize("name", [m for m in MODEL_NAMES if m != "unshared_rnn"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_padding_is_masked(name, return_sequences):
    """The same sequence with and without trailing padding gives the same output."""
    config = _config(name, return_sequences=return_sequences, num_layers=2 if name != "lstm" else 1)
    body = zoo.build(config, None, F, mask_value=0.0)
    x = np.random.default_rng(1).normal(size=(1, 4, F)).astype("float32")
    padded = np.concatenate([x, np.zeros((1, 3, F), "float32")], axis=1)
    short, long = np.asarray(body(x)), np.asarray(body(padded))
    if return_sequences:
        long = long[:, :4]
    np.testing.assert_allclose(long, short, atol=1e-5)
    # And the padding really was there to be masked: without a mask it changes the output.
    unmasked = zoo.build(config, None, F)
    unmasked.set_weights(body.get_weights())
    if not return_sequences:
        assert not np.allclose(np.asarray(unmasked(padded)), short, atol=1e-4)


@pytest.mark.parametrize("cell", ["simple", "lstm"])
@pytest.mark.parametrize("steps", [1, 4, 9])
def test_unshared_params_grow_linearly_with_timesteps(cell, steps):
    gates = 4 if cell == "lstm" else 1
    config = ModelConfig("unshared_rnn", units=UNITS, cell=cell)
    expected = steps * gates * UNITS * (F + UNITS + 1)
    assert zoo.count_params(config, steps, F) == expected
    assert UnsharedRNN.count_params_for(UNITS, steps, F, cell) == expected


@pytest.mark.parametrize("cell,reference", [("simple", keras.layers.SimpleRNN), ("lstm", keras.layers.LSTM)])
def test_unshared_with_equal_weights_reproduces_shared_layer(cell, reference):
    x = np.random.default_rng(2).normal(size=(4, T, F)).astype("float32")
    shared = reference(UNITS, return_sequences=True)
    expected = np.asarray(shared(x))
    # Perturb the reference's bias so a bias mix-up cannot pass.
    kernel, recurrent, bias = shared.get_weights()
    bias = bias + np.random.default_rng(3).normal(scale=0.5, size=bias.shape).astype("float32")
    shared.set_weights([kernel, recurrent, bias])
    expected = np.asarray(shared(x))
    unshared = UnsharedRNN(UNITS, timesteps=T, cell=cell, return_sequences=True)
    unshared.build((None, T, F))
    unshared.set_weights([np.stack([w] * T) for w in (kernel, recurrent, bias)])
    np.testing.assert_allclose(np.asarray(unshared(x)), expected, atol=1e-5)


def test_unshared_steps_have_their_own_weights():
    layer = UnsharedRNN(UNITS, timesteps=T)
    layer.build((None, T, F))
    kernel = layer.get_weights()[0]
    assert kernel.shape == (T, F, UNITS)
    assert not np.allclose(kernel[0], kernel[1]), "per-step kernels must be initialized independently"


def test_unshared_refuses_other_lengths():
    model = zoo.build(ModelConfig("unshared_rnn", units=UNITS), T, F)
    layer = model.layers[-1]
    with pytest.raises(ValueError, match=rf"exactly {T} timesteps.*length 9.*Pad or crop"):
        layer(np.zeros((1, 9, F), "float32"))
    with pytest.raises(ValueError, match="fixed number of timesteps.*unknown.*Pad or crop"):
        zoo.build(ModelConfig("unshared_rnn", units=UNITS), None, F)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(model="transformer"), r"Unknown model 'transformer'. Valid models: lstm, stacked_lstm, gru"),
        (dict(model="lstm", units=0), "argument units, expected a positive integer, got 0"),
        (dict(model="gru", num_layers=0), "argument num_layers, expected a positive integer, got 0"),
        (dict(model="lstm", num_layers=2), "use model 'stacked_lstm'"),
        (dict(model="stacked_lstm", num_layers=1), "expected >= 2"),
        (dict(model="unshared_rnn", cell="gru"), "expected one of simple, lstm"),
        (dict(model="bidirectional", cell="simple"), "expected one of lstm, gru"),
        (dict(model="bidirectional", merge_mode="max"), "merge_mode='max'"),
        (dict(model="lstm", dropout=1.5), r"dropout, expected a float in \[0, 1\)"),
    ],
)
def test_bad_config_is_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_wrong_input_rank_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"rank 3 \(batch, timesteps, features\), got shape \(None, 7\)"):
        zoo.apply(ModelConfig("gru"), keras.Input((7,)))


def test_config_round_trips_and_rebuilds_the_same_model():
    config = ModelConfig("bidirectional", units=4, num_layers=2, cell="gru", merge_mode="sum")
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config
    a, b = zoo.build(config, None, F), zoo.build(again, None, F)
    b.set_weights(a.get_weights())
    x = np.ones((2, 5, F), "float32")
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)))
    with pytest.raises(ValueError, match="Unknown ModelConfig fields"):
        ModelConfig.from_dict({**config.to_dict(), "size": 3})
    assert config.replace(model="lstm", num_layers=1).cell == "lstm"


@pytest.mark.parametrize("name", ["lstm", "stacked_lstm", "gru", "simple_rnn"])
def test_step_model_carries_state_like_the_full_model(name):
    """Feeding one step at a time with carried states equals one pass over the sequence."""
    config = _config(name, return_sequences=True)
    full = zoo.build(config, None, F)
    x_in = keras.Input((1, F))
    states_in = [keras.Input((w,)) for w in zoo.state_shapes(config)]
    y, states = zoo.apply(config, x_in, initial_states=states_in, return_states=True)
    step = keras.Model([x_in, *states_in], [y, *states])
    step.set_weights(full.get_weights())
    x = np.random.default_rng(4).normal(size=(2, 5, F)).astype("float32")
    states = [np.zeros((2, w), "float32") for w in zoo.state_shapes(config)]
    outs = []
    for t in range(5):
        y, *states = (np.asarray(v) for v in step([x[:, t : t + 1], *states]))
        outs.append(y[:, 0])
    np.testing.assert_allclose(np.stack(outs, 1), np.asarray(full(x)), atol=1e-5)
