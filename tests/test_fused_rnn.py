"""The fused CPU loops (``zoo.layers.FusedLSTM``, ``FusedGRU``) are ``keras.layers.LSTM`` and
``keras.layers.GRU``, only faster: the same outputs, gradients and training loss curve, and
Keras's own loop wherever the fused one does not apply."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.test_precision import _loss_curve
from zoo import models
from zoo.layers import FusedGRU, FusedLSTM
from zoo.layers.fused import bf16, gradient

B, T, F, UNITS = 3, 9, 5, 4
PAIRS = {"lstm": (keras.layers.LSTM, FusedLSTM), "gru": (keras.layers.GRU, FusedGRU)}
N_STATES = {"lstm": 2, "gru": 1}


@pytest.fixture(params=sorted(PAIRS))
def cell(request):
    return request.param


def _twins(cell, x, units=UNITS, **kwargs):
    """Keras's layer and the fused one holding the same weights (all perturbed, so a gate-order
    or bias mix-up cannot pass)."""
    ref_cls, fused_cls = PAIRS[cell]
    ref, fused = ref_cls(units, **kwargs), fused_cls(units, **kwargs)
    ref(x), fused(x)
    rng = np.random.default_rng(1)
    weights = [w + rng.normal(scale=0.3, size=w.shape).astype("float32") for w in ref.get_weights()]
    ref.set_weights(weights)
    fused.set_weights(weights)
    return ref, fused


def _gradients(layer, x, **call_kwargs):
    watched = [x, *call_kwargs.get("initial_state", [])]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        outputs = tf.nest.flatten(layer(x, **call_kwargs))
        # A different weight per output tensor, so each one's gradient is checked.
        loss = sum(tf.reduce_sum(t * w) for t, w in zip(outputs, (1.0, -2.0, 3.0), strict=False))
    return outputs, tape.gradient(loss, watched + layer.trainable_weights)


def _outputs_and_gradients(layer, x, **call_kwargs):
    outputs, grads = _gradients(layer, x, **call_kwargs)
    return [np.asarray(t) for t in outputs], [np.asarray(g) for g in grads]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"return_sequences": True},
        {"return_sequences": False, "return_state": True},
        {"return_sequences": True, "go_backwards": True},
    ],
    ids=["sequences", "last-and-states", "go-backwards"],
)
@pytest.mark.parametrize("with_initial_state", [False, True], ids=["zero-state", "carried-state"])
def test_fused_matches_keras_outputs_and_gradients(cell, kwargs, with_initial_state):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(B, T, F)).astype("float32"))
    ref, fused = _twins(cell, x, **kwargs)
    assert fused.fused()
    states = [tf.constant(rng.normal(size=(B, UNITS)).astype("float32")) for _ in range(N_STATES[cell])]
    call = {"initial_state": states} if with_initial_state else {}
    (ref_out, ref_grads), (out, grads) = (
        _outputs_and_gradients(ref, x, **call),
        _outputs_and_gradients(fused, x, **call),
    )
    assert len(out) == len(ref_out) and len(grads) == len(ref_grads) == 4 + len(call.get("initial_state", []))
    for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    assert min(np.abs(g).max() for g in grads) > 1e-3  # no gradient is trivially zero


@pytest.mark.parametrize("batch,dynamic", [(25, False), (2, True)], ids=["static-uneven", "dynamic-with-empty-chunk"])
def test_batch_chunks_run_as_concurrent_loops_with_keras_results(monkeypatch, cell, batch, dynamic):
    """On a 3-core machine a batch of 25 runs as loops over 8, 8 and 9 rows; a batch unknown
    at trace time is split into 3 at run time, even when a chunk is empty."""
    monkeypatch.setattr(gradient, "_usable_cores", lambda: 3)
    splits = []
    split = gradient._batch_split
    monkeypatch.setattr(gradient, "_batch_split", lambda *a: splits.append(split(*a)) or splits[-1])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, T, F)).astype("float32"))
    states = [tf.constant(rng.normal(size=(batch, UNITS)).astype("float32")) for _ in range(N_STATES[cell])]
    ref, fused = _twins(cell, x, return_sequences=True, return_state=True)
    splits.clear()

    def run(layer, x, *states):
        if not dynamic:
            return _outputs_and_gradients(layer, x, initial_state=list(states))
        spec = [tf.TensorSpec((None, T, F))] + [tf.TensorSpec((None, UNITS))] * len(states)
        graph = tf.function(lambda x, *s: _gradients(layer, x, initial_state=list(s)), input_signature=spec)
        outputs, grads = graph(x, *states)
        return [np.asarray(t) for t in outputs], [np.asarray(g) for g in grads]

    (ref_out, ref_grads), (out, grads) = run(ref, x, *states), run(fused, x, *states)
    assert [len(s) for s in splits] == [3] and (dynamic or splits[0] == [8, 8, 9])
    for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_only_small_recurrent_kernels_are_split(monkeypatch):
    """Measured on 2 cores: two loops pay up to LSTM 512 and lose at LSTM 1024."""
    monkeypatch.setattr(gradient, "_usable_cores", lambda: 2)
    assert gradient._batch_split(64, tf.zeros((512, 2048))) == [32, 32]
    assert gradient._batch_split(64, tf.zeros((1024, 4096))) == [64]
    assert gradient._batch_split(15, tf.zeros((256, 1024))) == [15]  # chunks of at least 8 rows


def test_fused_falls_back_to_the_keras_loop_where_it_does_not_apply(cell):
    x = tf.constant(np.random.default_rng(0).normal(size=(B, T, F)).astype("float32"))
    # A mask: the padded steps carry the state, exactly as Keras's loop does.
    mask = tf.constant(np.arange(T)[None, :] < np.array([[T], [5], [2]]))
    ref, fused = _twins(cell, x, return_sequences=True)
    assert not fused.fused(mask=mask)
    np.testing.assert_allclose(np.asarray(fused(x, mask=mask)), np.asarray(ref(x, mask=mask)), atol=1e-6)
    fused_cls = PAIRS[cell][1]
    # Dropout inside the cell while training; in inference the fused loop applies.
    dropping = fused_cls(UNITS, recurrent_dropout=0.5)
    assert not dropping.fused(training=True) and dropping.fused(training=False)
    # float16 compute and non-default activations use Keras's loop; bfloat16 takes the fused one.
    assert not fused_cls(UNITS, dtype="mixed_float16").fused()
    assert not fused_cls(UNITS, activation="relu").fused()
    assert fused_cls(UNITS, dtype="mixed_bfloat16").fused()
    if cell == "gru":
        assert not fused_cls(UNITS, reset_after=False).fused()


@pytest.mark.parametrize("shape", [(B, T, F, UNITS), (16, 100, 32, 64)], ids=["short", "100-steps"])
def test_bfloat16_fused_layer_is_closer_to_float32_than_keras_bfloat16_layer(cell, shape):
    """Under ``mixed_bfloat16`` the fused layer multiplies bfloat16 operands (the per-step
    recurrent matmuls accumulate in float32), keeps its states in float32 and stores what its
    loop saves in bfloat16: its outputs and gradients are bf16 tensors within bf16 rounding of
    the float32 layer's, also over 100 steps, and no further from them than Keras's
    all-bfloat16 loop."""
    batch, steps, features, units = shape
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(batch, steps, features)).astype("float32"))
    ref_cls, fused_cls = PAIRS[cell]
    layers = {
        "float32": fused_cls(units, return_sequences=True),
        "fused bf16": fused_cls(units, return_sequences=True, dtype="mixed_bfloat16"),
        "keras bf16": ref_cls(units, return_sequences=True, dtype="mixed_bfloat16"),
    }
    for layer in layers.values():
        layer(x)
        layer.set_weights(layers["float32"].get_weights())
    assert layers["fused bf16"].fused() and layers["fused bf16"](x).dtype == tf.bfloat16
    (ref_out, ref_grads), *rest = (_outputs_and_gradients(layer, x) for layer in layers.values())
    errors = [
        max(
            np.abs(a.astype("float32") - b).max() / np.abs(b).max()
            for a, b in zip(out + grads, ref_out + ref_grads, strict=True)
        )
        for out, grads in rest
    ]
    fused_error, keras_error = errors
    assert fused_error < 2e-2  # bfloat16 keeps 8 significant bits
    if _native_bf16():
        # Without native bf16 instructions oneDNN emulates the large bf16 matmuls with another
        # rounding, and the comparison with Keras's loop no longer measures the fused loop.
        assert fused_error <= keras_error


def _native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX), as Linux reports it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_bfloat16_bit_patterns_convert_exactly_as_tf_cast():
    """The loops read and write bfloat16 arrays as uint16 bit patterns; both directions must
    equal ``tf.cast`` bit for bit, in XLA as in eager: ties round to even, NaN stays NaN."""
    rng = np.random.default_rng(0)
    tie = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7FFFFF, 0x00000001, 0x7F800001], "uint32").view("float32")
    edge = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -3e38], "float32")
    spread = (rng.normal(size=4000) * 10.0 ** rng.integers(-40, 38, 4000)).astype("float32")  # subnormal to huge
    value = tf.constant(np.concatenate([spread, tie, edge])[None])  # (B, n): one step

    @tf.function(jit_compile=True)
    def encode_and_read(v):
        encoded = bf16.encode(v, tf.uint16)
        return encoded, bf16.read(encoded[:, None], 0)  # as a (B, T=1, n) buffer

    for encoded, read in (encode_and_read(value), encode_and_read.python_function(value)):
        expected = tf.cast(value, tf.bfloat16)
        np.testing.assert_array_equal(np.asarray(encoded), np.asarray(tf.bitcast(expected, tf.uint16)))
        np.testing.assert_array_equal(np.asarray(read), np.asarray(tf.cast(expected, tf.float32)))  # NaN == NaN here
        assert np.asarray(bf16.from_bits(encoded)).dtype == tf.bfloat16.as_numpy_dtype


def test_every_zoo_lstm_and_gru_uses_a_fused_layer():
    for config in (
        zoo.ModelConfig("lstm", units=UNITS),
        zoo.ModelConfig("stacked_lstm", units=UNITS, num_layers=2),
        zoo.ModelConfig("gru", units=UNITS, num_layers=2),
        zoo.ModelConfig("bidirectional", units=UNITS, cell="lstm"),
        zoo.ModelConfig("bidirectional", units=UNITS, cell="gru"),
    ):
        model = zoo.build(config, T, F)
        rnns = [layer for layer in model._flatten_layers() if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))]
        assert rnns and all(isinstance(layer, (FusedLSTM, FusedGRU)) for layer in rnns), config


def test_bidirectional_fused_matches_keras(cell):
    x = tf.constant(np.random.default_rng(4).normal(size=(B, T, F)).astype("float32"))
    ref_cls, fused_cls = PAIRS[cell]
    ref = keras.layers.Bidirectional(ref_cls(UNITS, return_sequences=True))
    fused = keras.layers.Bidirectional(fused_cls(UNITS, return_sequences=True))
    ref(x), fused(x)
    fused.set_weights(ref.get_weights())
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(ref(x)), atol=1e-6)


def _keras_loop(zoo_cls, built):
    """``zoo_cls`` as the zoo's body builder calls it, with the fused loop off whatever the
    config says: Keras's own loop in the zoo's layer (the truncated BPTT below needs a zoo layer,
    which carries state across chunks; stock ``keras.layers.LSTM`` is refused there). Each layer
    made is appended to ``built``."""

    def make(*args, fused=True, **kwargs):
        built.append(zoo_cls(*args, fused=False, **kwargs))
        return built[-1]

    return make


@pytest.mark.parametrize("model,bptt", [("lstm", None), ("lstm", 8), ("gru", None)])
def test_training_with_the_fused_layer_follows_the_keras_loss_curve(monkeypatch, model, bptt):
    """The zoo's own training path (monitored step; truncated BPTT carries states through
    the fused loop) on the same data from the same initial weights, against Keras's loop."""
    fused = _loss_curve(model, "float32", bptt)
    cell = "lstm" if model == "lstm" else "gru"
    built = []
    monkeypatch.setitem(models._RNN_CLASSES, cell, _keras_loop(PAIRS[cell][1], built))
    ref = _loss_curve(model, "float32", bptt)
    assert built and not any(layer.fused() for layer in built)
    assert ref[-1] < 0.5 * ref[0]  # the task is learned, so the curves have a shape to compare
    # Measured: at most 3e-7 relative difference at any epoch (float32 round-off).
    np.testing.assert_allclose(fused, ref, rtol=1e-5)


def test_static_shapes_survive_a_more_general_trace(cell):
    """A graph with unknown batch and length traces the fused loop first; a later call with
    known shapes (the sampler's jit-compiled loop) still gets static output shapes."""
    layer = PAIRS[cell][1](UNITS, return_sequences=True, return_state=True)
    spec = tf.TensorSpec((None, None, F))
    tf.function(lambda x: layer(x), input_signature=[spec]).get_concrete_function()
    shapes = []

    @tf.function(jit_compile=True)
    def step(x, *states):
        out = layer(x, initial_state=list(states))
        shapes.extend(t.shape.as_list() for t in out)
        return out

    step(tf.zeros((1, 1, F)), *[tf.zeros((1, UNITS))] * N_STATES[cell])
    assert shapes == [[1, 1, UNITS]] + [[1, UNITS]] * N_STATES[cell]


def _random_case(rng, cell):
    """A layer shape, call and input drawn from ``rng``: batch up to 30 (split into 2 or 3
    concurrent chunks from 16 rows on, with 3 cores), 1 to 12 steps, features and units from 1
    (a single unit or feature is an edge case of every split and concatenation)."""
    batch, steps, features, units = (int(rng.integers(1, n + 1)) for n in (30, 12, 7, 9))
    kwargs = {"return_sequences": bool(rng.integers(2)), "go_backwards": bool(rng.integers(2)), "return_state": True}
    x = tf.constant(rng.normal(size=(batch, steps, features)).astype("float32"))
    states = [tf.constant(rng.normal(size=(batch, units)).astype("float32")) for _ in range(N_STATES[cell])]
    lengths = rng.integers(1, steps + 1, size=batch)  # every row keeps at least one step
    mask = tf.constant(np.arange(steps)[None, :] < lengths[:, None])
    return x, units, kwargs, states, mask


def _relative_errors(outputs, expected):
    return [
        np.abs(a.astype("float32") - b).max() / max(np.abs(b).max(), 1e-6)
        for a, b in zip(outputs, expected, strict=True)
    ]


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_fused_matches_keras_gradients_on_random_shapes(monkeypatch, cell, masked):
    """Outputs and the gradients in the input, every weight and the initial states equal Keras's
    over random shapes and calls. A mask sends the layer to Keras's own loop, which must still
    be Keras's results (through the zoo's ``inner_loop`` hooks)."""
    monkeypatch.setattr(gradient, "_usable_cores", lambda: 3)  # batch chunks on any machine
    rng = np.random.default_rng(11)
    for _ in range(3):
        x, units, kwargs, states, mask = _random_case(rng, cell)
        ref, fused = _twins(cell, x, units=units, **kwargs)
        call = {"initial_state": states, **({"mask": mask} if masked else {})}
        assert fused.fused(mask=call.get("mask")) is not masked
        (ref_out, ref_grads), (out, grads) = (
            _outputs_and_gradients(ref, x, **call),
            _outputs_and_gradients(fused, x, **call),
        )
        assert len(grads) == len(ref_grads) == 4 + N_STATES[cell]
        for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=f"{x.shape} units={units} {kwargs}")


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_bfloat16_fused_matches_keras_gradients_on_random_shapes(monkeypatch, cell, masked):
    """Under ``mixed_bfloat16`` the fused layer is within bfloat16 rounding of Keras's float32
    layer over random shapes (the tolerance of the bf16 test above); with a mask it runs Keras's
    own bfloat16 loop and equals Keras's bfloat16 layer."""
    monkeypatch.setattr(gradient, "_usable_cores", lambda: 3)
    rng = np.random.default_rng(12)
    ref_cls, fused_cls = PAIRS[cell]
    for _ in range(3):
        x, units, kwargs, states, mask = _random_case(rng, cell)
        ref, _ = _twins(cell, x, units=units, **kwargs)
        fused = fused_cls(units, dtype="mixed_bfloat16", **kwargs)
        keras_bf16 = ref_cls(units, dtype="mixed_bfloat16", **kwargs) if masked else None
        for layer in (fused, keras_bf16) if masked else (fused,):
            layer(x)
            layer.set_weights(ref.get_weights())
        call = {"initial_state": states, **({"mask": mask} if masked else {})}
        assert fused.fused(mask=call.get("mask")) is not masked
        out, grads = _outputs_and_gradients(fused, x, **call)
        assert out[0].dtype == tf.bfloat16.as_numpy_dtype
        if masked:
            keras_out, keras_grads = _outputs_and_gradients(keras_bf16, x, **call)
            for a, b in zip(out + grads, keras_out + keras_grads, strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            ref_out, ref_grads = _outputs_and_gradients(ref, x, **call)
            errors = _relative_errors(out + grads, ref_out + ref_grads)
            assert max(errors) < 2e-2, (x.shape, units, kwargs, errors)  # bfloat16 keeps 8 significant bits


def test_model_config_fused_false_builds_keras_loop_layers_with_the_same_results():
    """``ModelConfig(fused=False)`` builds the same layers (same classes and weights) whose
    ``fused()`` is off, so they run Keras's own loop; outputs and gradients equal the fused body's."""
    x = tf.constant(np.random.default_rng(5).normal(size=(B, T, F)).astype("float32"))
    for config in (
        zoo.ModelConfig("stacked_lstm", units=UNITS, num_layers=2, return_sequences=True),
        zoo.ModelConfig("gru", units=UNITS),
        zoo.ModelConfig("bidirectional", units=UNITS, cell="lstm"),
        zoo.ModelConfig("bidirectional", units=UNITS, cell="gru"),
    ):
        fused, stock = zoo.build(config, T, F), zoo.build(config.replace(fused=False), T, F)
        rnns = {
            model: [layer for layer in model._flatten_layers() if isinstance(layer, (FusedLSTM, FusedGRU))]
            for model in (fused, stock)
        }
        assert len(rnns[fused]) == len(rnns[stock]) == config.num_layers * (2 if config.model == "bidirectional" else 1)
        assert all(layer.fused() for layer in rnns[fused]), config
        assert not any(layer.fused() or layer.get_config()["fused"] for layer in rnns[stock]), config
        stock.set_weights(fused.get_weights())
        (out, grads), (ref_out, ref_grads) = (_outputs_and_gradients(model, x) for model in (fused, stock))
        for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=str(config))


def test_fused_switch_is_validated_saved_and_defaults_on_for_old_cards():
    assert zoo.ModelConfig("lstm").fused is True
    card = zoo.ModelConfig("gru", units=UNITS).to_dict()
    assert card.pop("fused") is True
    assert zoo.ModelConfig.from_dict(card).fused is True  # a card.json written before the field
    assert zoo.ModelConfig.from_dict({**card, "fused": False}).fused is False
    for bad in ("false", 0, None):
        with pytest.raises(ValueError, match=rf"fused must be a bool \(True or False\), got {bad!r}"):
            zoo.ModelConfig("lstm", fused=bad)
    zoo.build(zoo.ModelConfig("simple_rnn", units=UNITS, fused=False), T, F)  # no fused loop to turn off
    for cls in (FusedLSTM, FusedGRU):
        layer = cls(UNITS, fused=False)
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(again) is cls and not again.use_fused and not again.fused()
        assert cls.from_config({k: v for k, v in cls(UNITS).get_config().items() if k != "fused"}).fused()
        with pytest.raises(ValueError, match="argument fused, expected a bool, got 'yes'"):
            cls(UNITS, fused="yes")
