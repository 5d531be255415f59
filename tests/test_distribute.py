"""Data-parallel training (``--strategy``): two MultiWorkerMirroredStrategy CPU workers on loopback
finish with identical weights; bad strategy input is a clear error.

Run as a script (``python tests/test_distribute.py OUT.npz``) it is one worker: it reads TF_CONFIG,
builds a small zoo model inside ``strategy_scope`` and trains it through ``zoo.training``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _worker(out: str) -> None:
    from tasks.common import distribution_strategy, strategy_scope
    from tasks.options import TaskOptions

    args = TaskOptions(strategy="multiworker")
    strategy = distribution_strategy(args.strategy)  # first: before any other TensorFlow op
    import keras
    import tensorflow as tf

    import zoo
    from zoo import ModelConfig
    from zoo.training import compile_model, fit

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 3)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # global batch 16, sharded over the workers
    with strategy_scope(args):
        inputs = keras.Input((6, 3))
        outputs = keras.layers.Dense(1, activation="sigmoid")(zoo.apply(ModelConfig("gru", units=8), inputs))
    model = zoo.SeqModel(inputs, outputs)  # outside the scope: see zoo.training.fit
    with strategy_scope(args):
        compile_model(model, loss="binary_crossentropy", learning_rate=0.01)
    with strategy_scope(args):
        history = fit(model, data, epochs=2, verbose=0, checkpoint=False, resume=False)  # gradient norms monitored
    np.savez(
        out,
        *model.get_weights(),
        replicas=strategy.num_replicas_in_sync,
        loss=np.asarray(history.history["loss"]),
        grad_norm=np.asarray(history.steps["grad_norm"]),
    )


def test_strategy_errors_are_clear(monkeypatch, capsys):
    from tasks import sequence_classification as sc
    from tasks.common import distribution_strategy, strategy_scope
    from tasks.options import TaskOptions

    with pytest.raises(ValueError, match="strategy must be one of none, mirrored, multiworker, got 'tpu'"):
        distribution_strategy("tpu")
    with pytest.raises(ValueError, match="strategy must be one of none, mirrored, multiworker, got 'tpu'"):
        TaskOptions(strategy="tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy 'multiworker' needs TF_CONFIG"):
        distribution_strategy("multiworker")
    with strategy_scope(TaskOptions()):  # none: a no-op scope
        pass
    with pytest.raises(SystemExit):
        sc.main(["--strategy", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def test_classify_quick_trains_and_exports_under_mirrored_strategy(tmp_path, capsys):
    """``seqzoo train classify --quick --strategy mirrored`` (MirroredStrategy on this machine's one CPU)
    trains every batch, exports, and the export reproduces the test accuracy it reports.

    (Not compared with a run without --strategy: the distributed input pipeline shuffles the
    training set in another order, so the two runs see different batches.)"""
    import csv

    from tasks.cli import main

    runs, saved = tmp_path / "runs", tmp_path / "sm"
    rc = main(
        ["train", "classify", "--quick", "--strategy", "mirrored", "--runs", str(runs), "--saved-models", str(saved)]
    )
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert "strategy: mirrored, 1 replica(s) in sync" in out
    [folder] = list((runs / "classify" / "gru").iterdir())
    [history] = [{k: float(v) for k, v in row.items()} for row in csv.DictReader((folder / "history.csv").open())]
    steps = list(csv.DictReader((folder / "grad_norms.csv").open()))
    assert len(steps) == 4  # 59 training sequences in batches of 16: every batch took a mirrored step
    norms = np.array([float(r["grad_norm"]) for r in steps])
    assert np.isfinite(norms).all() and (norms > 0).all()
    assert np.isfinite([history["loss"], history["val_loss"]]).all() and history["loss"] > 0
    assert 0 <= history["accuracy"] <= 1 and 0 <= history["val_accuracy"] <= 1
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["n_test"] == 74 and 0 < metrics["majority_baseline_accuracy"] < 1
    assert f"test accuracy {metrics['accuracy']:.2%}" in out
    export = saved / "classify" / "gru" / "1"
    assert f"export: {export}" in out
    assert json.loads((export / "card.json").read_text())["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])
    # the export (written from mirrored variables) reproduces the reported test accuracy
    import tasks.sequence_classification as sc
    from tasks.export import load_keras

    model = load_keras(export)
    data = sc.load_data(sc.Options.quick())
    probs, labels = sc.predict(model, data.test)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert float(np.mean(probs.argmax(-1) == labels)) == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("task", ["textgen", "movement"])
def test_other_tasks_train_and_export_under_mirrored_strategy(task, tmp_path, capsys):
    """textgen and movement take ``--strategy mirrored`` too: every batch takes a step with a finite
    gradient norm, and the export is written from the mirrored variables."""
    import csv

    from tasks.cli import main

    runs, saved = tmp_path / "runs", tmp_path / "sm"
    rc = main(["train", task, "--quick", "--strategy", "mirrored", "--runs", str(runs), "--saved-models", str(saved)])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    [folder] = [p for p in (runs / task).glob("*/*") if p.is_dir()]
    steps = list(csv.DictReader((folder / "grad_norms.csv").open()))
    assert steps and all(np.isfinite(float(r["grad_norm"])) and float(r["grad_norm"]) > 0 for r in steps)
    [card] = list(saved.glob(f"{task}/*/1/card.json"))
    assert card.exists() and (card.parent / "saved_model.pb").exists()
    # Truncated BPTT updates inside a chunk loop, which replicas cannot synchronize: a clear error, not a traceback.
    assert (
        main(["train", task, "--quick", "--strategy", "mirrored", "--bptt", "4", "--runs", str(runs), "--no-export"])
        == 2
    )
    assert "tf.distribute cannot synchronize" in capsys.readouterr().err


def test_two_multiworker_processes_end_with_identical_weights(tmp_path):
    from tuning.distributed import free_port

    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="3",
            CUDA_VISIBLE_DEVICES="",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, str(tmp_path / f"w{index}.npz")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    assert int(w0["replicas"]) == 2
    weights = [k for k in w0.files if k.startswith("arr_")]
    assert len(weights) == 5  # gru kernel, recurrent kernel, bias; dense kernel, bias
    for k in weights:
        np.testing.assert_array_equal(w0[k], w1[k])
    np.testing.assert_allclose(w0["loss"], w1["loss"], rtol=1e-6)
    assert np.isfinite(w0["loss"]).all()
    # 2 epochs x 4 steps (64 / global batch 16); Keras averages logs over the workers, so both logged the same norms
    assert w0["grad_norm"].shape == (8,) and np.isfinite(w0["grad_norm"]).all()
    np.testing.assert_allclose(w0["grad_norm"], w1["grad_norm"], rtol=1e-6)


if __name__ == "__main__":
    _worker(sys.argv[1])
