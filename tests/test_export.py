"""Versioned atomic exports that serve without seqzoo's code."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import zoo
from tasks import export as ex
from zoo import ModelConfig
from zoo.config import MODEL_NAMES
from zoo.errors import FileProblem

T, F = 5, 3


def _model(name):
    config = ModelConfig(name, units=4, num_layers=2 if name == "stacked_lstm" else 1)
    inputs = keras.Input((T, F), name="series")
    probs = keras.layers.Dense(3, activation="softmax")(zoo.apply(config, inputs))
    return config, zoo.SeqModel(inputs, probs)


SERVE_ELSEWHERE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    jobs = json.loads(sys.argv[1])
    for path, x_file, out_file in jobs:
        served = tf.saved_model.load(path)
        x = np.load(x_file)
        # Two batch sizes: the whole batch, then one example at a time.
        whole = served.serve(tf.constant(x)).numpy()
        single = np.concatenate([served.serve(tf.constant(x[i : i + 1])).numpy() for i in range(len(x))])
        np.savez(out_file, whole=whole, single=single)
    assert not any(m == "zoo" or m.startswith(("zoo.", "tasks")) for m in sys.modules), "seqzoo was imported"
    """
)


def test_every_model_serves_in_a_process_without_seqzoo(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, T, F)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    jobs, expected = [], {}
    for name in MODEL_NAMES:
        config, model = _model(name)
        path = ex.export(model, task="unit", config=config, root=tmp_path / "exports", card={"metrics": {"acc": 0.5}})
        assert path == tmp_path / "exports" / "unit" / name / "1"
        expected[name] = model.predict(x, verbose=0)
        jobs.append((str(path), str(tmp_path / "x.npy"), str(tmp_path / f"{name}.npz")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-c", SERVE_ELSEWHERE, json.dumps(jobs)], check=True, cwd=tmp_path, env=env, timeout=300
    )
    for name in MODEL_NAMES:
        served = np.load(tmp_path / f"{name}.npz")
        np.testing.assert_allclose(served["whole"], expected[name], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(served["single"], expected[name], atol=1e-5, err_msg=name)


def test_versions_increase_and_never_overwrite(tmp_path):
    config, model = _model("gru")
    first = ex.export(model, task="t", config=config, root=tmp_path)
    (first / "marker").write_text("keep me")
    second = ex.export(model, task="t", config=config, root=tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert (first / "marker").read_text() == "keep me"
    assert ex.versions(tmp_path, "t", "gru") == [1, 2]
    # No temporary folders are left behind.
    assert sorted(p.name for p in (tmp_path / "t" / "gru").iterdir()) == ["1", "2"]
    assert ex.resolve_export(tmp_path / "t" / "gru") == second


def test_card_has_what_rebuilds_and_describes_the_model(tmp_path):
    config, model = _model("bidirectional")
    path = ex.export(
        model, task="t", config=config, root=tmp_path, card={"data": {"name": "synthetic"}, "metrics": {"acc": 0.9}}
    )
    card = ex.load_card(path)
    assert card["task"] == "t" and card["model"] == "bidirectional" and card["version"] == 1
    assert card["params"] == model.count_params()
    assert card["data"] == {"name": "synthetic"} and card["metrics"] == {"acc": 0.9}
    assert set(card["versions"]) >= {"seqzoo", "tensorflow", "keras"} and card["created"]
    rebuilt = zoo.build(ModelConfig.from_dict(card["config"]), T, F)
    assert rebuilt.count_params() == model.count_params() - model.layers[-1].count_params()
    reloaded = ex.load_keras(path)
    x = np.ones((2, T, F), "float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_compiled_export_reloads_in_a_fresh_process(tmp_path):
    """model.keras names seqzoo's layers and optimizer; load_keras registers them, and every
    other class a task's export may name, itself."""
    from zoo import training

    config, model = _model("lstm")
    training.compile_model(model, loss="sparse_categorical_crossentropy", clipnorm=1.0)
    model.fit(np.ones((4, T, F), "float32"), np.zeros(4), verbose=0)
    path = ex.export(model, task="t", config=config, root=tmp_path)
    script = (
        "import sys; from tasks.export import load_keras; m = load_keras(sys.argv[1]); "
        "assert type(m).__name__ == 'SeqModel', type(m); "
        "print(type(m.layers[1]).__name__, type(m.optimizer).__module__, type(m.optimizer).__name__, m.optimizer.clipnorm); "
        "import keras; print(keras.saving.get_registered_object('seqzoo>LengthMask').__module__)"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["FusedLSTM", "zoo.optimizers", "Adam", "1.0", "tasks.sequence_classification.layers"]


def test_a_failed_export_leaves_nothing(tmp_path):
    config, model = _model("lstm")
    with pytest.raises(TypeError, match="not JSON serializable"):
        ex.export(model, task="t", config=config, root=tmp_path, card={"bad": object()})
    assert list((tmp_path / "t" / "lstm").iterdir()) == []


def test_root_comes_from_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ex.ENV_VAR, str(tmp_path / "env"))
    assert ex.saved_models_root(None) == tmp_path / "env"
    assert ex.saved_models_root(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(ex.ENV_VAR)
    assert str(ex.saved_models_root(None)) == "saved_models"


def test_resolve_export_errors(tmp_path):
    with pytest.raises(FileProblem, match="missing: no export here: the path does not exist"):
        ex.resolve_export(tmp_path / "missing")
    with pytest.raises(FileProblem, match="not a seqzoo export"):
        ex.resolve_export(tmp_path)
