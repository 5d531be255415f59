"""Training mechanics: truncated BPTT, gradient-norm monitoring, clipping, resume, NaN stop."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tasks import common
from zoo import bptt as B
from zoo import optimizers, training
from zoo.monitor import TrainingDiverged

REPO = Path(__file__).resolve().parents[1]


def seq_model(model="lstm", units=5, features=3, outputs=2, timesteps=None, return_sequences=True):
    cfg = zoo.ModelConfig(model, units=units, return_sequences=return_sequences)
    inputs = keras.Input((timesteps, features))
    out = keras.layers.Dense(outputs, name="head")(zoo.apply(cfg, inputs))
    return zoo.SeqModel(inputs, out)


# ------------------------------------------------------------------ schedule
def test_parse_bptt_schedule_and_errors():
    s = B.parse_bptt("1:2,5:2,20:3,full")
    assert [s.k_for(e) for e in range(9)] == [1, 1, 5, 5, 20, 20, 20, None, None]
    assert str(s) == "1:2,5:2,20:3,full"
    assert B.parse_bptt(None).k_for(3) is None and B.parse_bptt("full").k_for(0) is None
    assert B.parse_bptt(7).k_for(100) == 7 and B.parse_bptt("2:1,4:1").k_for(5) == 4
    for bad in ("0", "x", "5:0", "5,10", "", "-3", "full:x"):
        with pytest.raises(ValueError, match="bptt"):
            B.parse_bptt(bad)


# ------------------------------------------------- gradients vs. references
def _unrolled(model, x, y, *, detach_every_step: bool):
    """Per-step losses on the hand-unrolled cell; returns the list of gradients.

    detach_every_step: one gradient per step, each through one step only (the
    incoming state is held constant with stop_gradient). Otherwise one gradient
    of the mean loss over all steps, through all steps (full BPTT).
    """
    layer, head = B.recurrent_layers(model)[0], model.get_layer("head")
    weights = model.trainable_weights
    batch, steps = x.shape[0], x.shape[1]
    states = [tf.zeros((batch, d)) for d in tf.nest.flatten(layer.cell.state_size)]
    grads, losses = [], []
    with tf.GradientTape(persistent=True) as tape:
        for t in range(steps):
            if detach_every_step:
                states = [tf.stop_gradient(s) for s in states]
            out, states = layer.cell(x[:, t], states)
            states = tf.nest.flatten(states)
            loss = tf.reduce_mean(tf.square(head(out) - y[:, t]))
            losses.append(loss)
        total = tf.add_n(losses) / steps
    if detach_every_step:
        grads = [tape.gradient(loss, weights) for loss in losses]
    else:
        grads = [tape.gradient(total, weights)]
    return grads


def _chunk_grads(model, x, y, k, *, per_step=True):
    """The gradients the BPTT mechanism hands to the optimizer, chunk by chunk."""
    carrier = B.StateCarrier(model)
    carrier.attach()
    recorded = []
    try:
        carrier.begin_batch(x.shape[0], carry=False)
        B.run_chunks(model, x, y, None, k, lambda g: recorded.append(g) or {}, per_step=per_step)
    finally:
        carrier.detach()
    return recorded


@pytest.mark.parametrize("name", ["lstm", "gru", "simple_rnn"])
def test_truncated_bptt_gradients_match_unrolled_references(name):
    model = seq_model(name)
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 6, 3)), tf.float32)
    y = tf.constant(rng.normal(size=(4, 6, 2)), tf.float32)

    # K=1: one update per step, each the gradient of that step's loss with the incoming state held constant.
    got, want = _chunk_grads(model, x, y, 1), _unrolled(model, x, y, detach_every_step=True)
    assert len(got) == len(want) == 6
    for g_step, w_step in zip(got, want, strict=True):
        for g, w in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    # The stop-gradient matters: the K=1 gradients differ from full BPTT's.
    full = _unrolled(model, x, y, detach_every_step=False)[0]
    assert not np.allclose(sum(g[1] for g in got) / 6, full[1], atol=1e-6)

    # K=T (and "full"): one update, exactly the full-BPTT gradient.
    for k in (6, None):
        (got_full,) = _chunk_grads(model, x, y, k)
        for g, w in zip(got_full, full, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_summary_model_only_final_chunk_sees_the_label():
    model = seq_model("gru", return_sequences=False)
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(4, 7, 3)), tf.float32)
    y = tf.constant(rng.normal(size=(4, 2)), tf.float32)
    (got,) = _chunk_grads(model, x, y, 3, per_step=False)  # chunks 3,3,1: one update, on the last chunk
    layer, head = B.recurrent_layers(model)[0], model.get_layer("head")
    state = [tf.zeros((4, 5))]
    with tf.GradientTape() as tape:
        for t in range(7):
            if t == 6:  # the last chunk (length 1) starts from a constant state
                state = [tf.stop_gradient(s) for s in state]
            out, state = layer.cell(x[:, t], state)
            state = tf.nest.flatten(state)
        loss = tf.reduce_mean(tf.square(head(out) - y))
    for g, w in zip(got, tape.gradient(loss, model.trainable_weights), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------- fit paths
def _text_data(n=32, steps=12, vocab=7, batch=8):
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, (n, steps))
    return tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, axis=1))).batch(batch)


def _char_model(vocab=7, units=6, model="lstm"):
    cfg = zoo.ModelConfig(model, units=units, return_sequences=True)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(vocab, 4, name="embedding")(inputs)
    m = zoo.SeqModel(inputs, keras.layers.Dense(vocab, name="head")(zoo.apply(cfg, x)))
    return training.compile_model(
        m, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )


def test_fit_bptt_schedule_updates_after_every_chunk_and_restores_model(tmp_path):
    model = _char_model()
    ds = _text_data()  # 4 batches of T=12 per epoch
    hist = training.fit(model, ds, ds, epochs=3, bptt="4:1,5:1,full", run_dir=tmp_path, verbose=0)
    # updates: 4 batches x (3 chunks, then ceil(12/5)=3 chunks, then 1)
    assert int(model.optimizer.iterations) == 4 * 3 + 4 * 3 + 4 * 1
    assert len(hist.history["loss"]) == 3 and np.isfinite(hist.history["val_loss"]).all()
    lstm = B.recurrent_layers(model)[0]
    assert lstm.state_slot is None and model.training_plan is None  # Keras's own steps again
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "finished"
    # Streaming: the state carries across batches; still one update per chunk.
    model2 = _char_model()
    training.fit(model2, ds, epochs=1, bptt=6, stream=True, verbose=0, monitor=False)
    assert int(model2.optimizer.iterations) == 4 * 2
    model2.predict(np.zeros((3, 5), "int32"), verbose=0)  # a normal model again (any batch size)


@pytest.mark.parametrize("k", [None, 4])
def test_streaming_carries_state_across_batches(k):
    """Batch 2 continues the rows of batch 1: with frozen weights the epoch loss equals the
    loss of one pass over the concatenated sequences."""
    model = _char_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=model.loss)
    x = np.random.default_rng(2).integers(0, 7, (4, 17))
    inputs, targets = x[:, :16], x[:, 1:]
    halves = tf.data.Dataset.from_tensor_slices(
        (np.stack([inputs[:, :8], inputs[:, 8:]]), np.stack([targets[:, :8], targets[:, 8:]]))
    )
    hist = training.fit(model, halves, epochs=1, bptt=k, stream=True, verbose=0)
    whole = float(model.loss(targets, model(inputs)))
    assert hist.history["loss"][0] == pytest.approx(whole, rel=1e-5)
    restarted = float(model.loss(targets[:, 8:], model(inputs[:, 8:])))  # what batch 2 would give from zeros
    assert abs(whole - (float(model.loss(targets[:, :8], model(inputs[:, :8]))) + restarted) / 2) > 1e-4


def test_bptt_refuses_models_that_cannot_carry_state():
    for cfg in (zoo.ModelConfig("bidirectional", units=4), zoo.ModelConfig("unshared_rnn", units=4)):
        inputs = keras.Input((6, 3))
        m = zoo.SeqModel(inputs, keras.layers.Dense(1)(zoo.apply(cfg, inputs)))
        training.compile_model(m, loss="mse")
        data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 6, 3)), np.zeros((4, 1)))).batch(2)
        with pytest.raises(ValueError, match="bptt must be 'full'"):
            training.fit(m, data, bptt=2, verbose=0)
        training.fit(m, data, verbose=0)  # full BPTT with monitoring works


def _tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of the TensorBoard scalars in ``folder``'s event files."""
    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


@pytest.mark.parametrize(
    "clip",
    [{"clipnorm": 0.05}, {"global_clipnorm": 0.05}, {"clipvalue": 0.002}, {}],
    ids=lambda c: next(iter(c), "none"),
)
def test_monitor_logs_norms_before_and_after_keras_clipping(tmp_path, clip):
    model = _char_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0, **clip), loss=model.loss)
    before = [w.numpy() for w in model.trainable_weights]
    ds = _text_data(n=8, batch=8)  # one step
    hist = training.fit(model, ds, epochs=1, run_dir=tmp_path, verbose=0)
    step = {k: v[0] for k, v in hist.steps.items()}
    # SGD with lr=1 moves the weights by exactly the clipped gradient Keras applied.
    applied = np.sqrt(sum(np.sum((w.numpy() - b) ** 2) for w, b in zip(model.trainable_weights, before, strict=True)))
    np.testing.assert_allclose(step["grad_norm_clipped"], applied, rtol=1e-4)
    if clip:
        assert step["grad_norm_clipped"] < step["grad_norm"]
    else:
        assert step["grad_norm_clipped"] == step["grad_norm"]
    # Layers add up to the global norm; gates add up to their LSTM layer.
    layers = [step[f"grad_norm/{n}"] for n in ("embedding", "lstm_0", "head")]
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(layers))), step["grad_norm"], rtol=1e-5)
    gates = [step[f"grad_norm/lstm_0/{g}"] for g in "ifco"]
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(gates))), step["grad_norm/lstm_0"], rtol=1e-5)
    if not clip:  # the update is the gradient: gate k is columns k*units:(k+1)*units of each LSTM weight
        lstm = B.recurrent_layers(model)[0]
        moved = [
            w.numpy() - b
            for w, b in zip(model.trainable_weights, before, strict=True)
            if any(w is v for v in lstm.weights)
        ]
        units = lstm.units
        expected = [np.sqrt(sum(np.sum(d[..., k * units : (k + 1) * units] ** 2) for d in moved)) for k in range(4)]
        np.testing.assert_allclose(gates, expected, rtol=1e-4)
    # Beside the run: CSV per step, PNG, TensorBoard events; epoch means in the History.
    rows = list(csv.DictReader(open(tmp_path / "grad_norms.csv")))
    assert len(rows) == 1 and float(rows[0]["grad_norm"]) == pytest.approx(step["grad_norm"])
    assert (tmp_path / "grad_norms.png").stat().st_size > 1000
    scalars = _tensorboard_scalars(tmp_path / "tensorboard" / "train")
    assert scalars["step/grad_norm"] == {1: pytest.approx(step["grad_norm"])}
    assert scalars["step/grad_norm/lstm_0/f"] == {1: pytest.approx(step["grad_norm/lstm_0/f"])}
    assert scalars["epoch_loss"] == {0: pytest.approx(hist.history["loss"][0])}
    assert hist.history["grad_norm"][0] == pytest.approx(step["grad_norm"])
    assert "_grad_norms" not in hist.history


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
@pytest.mark.parametrize("clip", [{}, {"clipnorm": 0.5}, {"global_clipnorm": 0.5}], ids=lambda c: next(iter(c), "none"))
def test_optimizers_apply_an_embedding_gradient_as_its_dense_sum(name, clip):
    """An Embedding's gradient has one row per token, repeated tokens included. Keras 3's
    optimizers square those rows one by one (Adam, RMSprop) and clip by their unsummed norm;
    seqzoo's must give exactly the update of the summed, dense gradient."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(6, 3)).astype("float32")
    ours, reference = keras.Variable(table), keras.Variable(table)
    opt = optimizers.make_optimizer(0.1, optimizer=name, **clip)
    stock = getattr(keras.optimizers, type(opt).__name__).from_config(opt.get_config())  # the plain Keras class
    for _ in range(3):
        rows = tf.constant([0, 0, 0, 2, 5, 0], tf.int32)  # token 0 four times; 1, 3, 4 absent
        grad = tf.IndexedSlices(tf.constant(rng.normal(size=(6, 3)).astype("float32") + 1.0), rows, tf.constant([6, 3]))
        opt.apply([grad], [ours])
        stock.apply([tf.convert_to_tensor(grad)], [reference])
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours.numpy(), table)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    model = seq_model(return_sequences=False)
    training.compile_model(model, loss="mse")
    x = np.random.default_rng(0).normal(size=(24, 5, 3)).astype("float32")
    x[18] = np.nan  # batch 5 of 6; epochs are 3 batches, so epoch 2 diverges
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((24, 2), "float32"))).batch(4).repeat()
    with pytest.raises(TrainingDiverged) as err:
        training.fit(model, ds, epochs=3, steps_per_epoch=3, run_dir=tmp_path, verbose=0)
    msg = str(err.value)
    assert "epoch 2, step 5" in msg and "last finite one" in msg and "--global-clipnorm" in msg
    with np.load(tmp_path / "checkpoint" / "state.npz") as data:
        assert int(data["epochs_done"]) == 1
        assert all(np.isfinite(data[k]).all() for k in data.files)
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "diverged"


# -------------------------------------------------------------------- resume
SCRIPT = textwrap.dedent(
    """
    import os, sys
    import keras, numpy as np, tensorflow as tf
    import zoo
    from zoo import training

    keras.utils.set_random_seed(7)
    run_dir, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (48, 10))
    ds = tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, 1))).shuffle(48, seed=3).batch(8)
    cfg = zoo.ModelConfig("gru", units=8, dropout=0.2, return_sequences=True)
    inputs = keras.Input((None,), dtype="int32")
    h = zoo.apply(cfg, keras.layers.Embedding(9, 4)(inputs))
    model = zoo.SeqModel(inputs, keras.layers.Dense(9)(h))
    training.compile_model(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Kill(keras.callbacks.Callback):  # SIGKILL in the middle of epoch 3
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if os.environ.get("KILL") and self.epoch == 2 and batch == 2:
                os.kill(os.getpid(), 9)

    training.fit(model, ds, epochs=4, bptt=5, run_dir=run_dir, callbacks=[Kill()], verbose=0)
    np.savez(out, *[v.numpy() for v in model.weights])
    """
)


@pytest.mark.slow  # 24 s; the SIGTERM resume test in tests/test_faults.py stays in the default suite
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}

    def start(run_dir, out, **extra):
        return subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / run_dir), str(tmp_path / out)],
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    straight = start("b", "b.npz")  # uninterrupted, alongside
    killed = start("a", "a.npz", KILL="1")
    killed.communicate(timeout=120)
    assert killed.returncode == -9 and not (tmp_path / "a.npz").exists()
    assert json.loads((tmp_path / "a" / "run.json").read_text())["epochs_done"] == 2
    resumed = start("a", "a.npz")  # the same command again
    for proc in (resumed, straight):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert len(a.files) == len(b.files) > 0
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "a" / "grad_norms.csv"))]
    assert steps == list(range(1, 4 * 6 + 1))  # 6 batches/epoch, no step logged twice
    epochs = [r["epoch"] for r in csv.DictReader(open(tmp_path / "a" / "history.csv"))]
    assert epochs == ["0", "1", "2", "3"]


# ---------------------------------------------------------------- task options
def test_options_map_to_fit_keywords_and_a_stable_run_folder(tmp_path):
    from tasks.options import TaskOptions

    options = TaskOptions(bptt="1:2,full", runs=str(tmp_path))
    assert options.fit_kwargs() == {"bptt": "1:2,full", "monitor": True, "resume": True, "checkpoint_every": 0}
    with pytest.raises(ValueError, match="bptt must be"):
        TaskOptions(bptt="zero")
    first = common.resolve_run_dir(options, "textgen", "lstm")
    assert first.parent == tmp_path / "textgen" / "lstm"
    (first / "checkpoint").mkdir()
    (first / "checkpoint" / "state.npz").write_bytes(b"")
    assert common.resolve_run_dir(options, "textgen", "lstm") == first  # unfinished: the same settings resume
    other = TaskOptions(bptt="3", runs=str(tmp_path))
    assert common.resolve_run_dir(other, "textgen", "lstm") != first  # other settings: a new run
    never = options.replace(resume="never")
    assert common.resolve_run_dir(never, "textgen", "lstm") != first
    named = TaskOptions(run_name="exp1", runs=str(tmp_path))
    assert common.resolve_run_dir(named, "textgen", "lstm") == tmp_path / "textgen" / "lstm" / "exp1"


def test_damaged_run_files_name_the_file_and_the_way_out(tmp_path):
    from tasks.options import TaskOptions
    from zoo import checkpoint, files
    from zoo.errors import FileProblem

    options = TaskOptions(runs=str(tmp_path))
    folder = common.resolve_run_dir(options, "textgen", "lstm")
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "state.npz").write_bytes(b"\xe7 not a checkpoint")
    (folder / "command.json").write_bytes(b"\xe7\x00")
    with pytest.raises(FileProblem, match="command.json: the run's settings record is damaged.*fresh run"):
        common.resolve_run_dir(options, "textgen", "lstm")
    (folder / "run.json").write_bytes(b"{broken")
    with pytest.raises(FileProblem, match="run.json: the run status is damaged.*resume='never'"):
        files.status(folder)
    model = _char_model()
    with pytest.raises(FileProblem, match="state.npz: the checkpoint cannot be read.*--resume never"):
        checkpoint.load(model, folder)
