"""Knowledge distillation of a seed ensemble into one classifier (``teachers``): the softened targets,
the loss, teachers that an interrupted command resumes, and an export that reloads."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import tasks.sequence_classification as sc
from tasks.common import command_key, resolve_run_dir, set_seed
from tasks.export import load_keras
from tasks.options import resume_command
from tasks.sequence_classification import distill
from zoo import checkpoint
from zoo.errors import ConfigError, FileProblem


def test_soften_keeps_the_ranking_and_flattens_as_the_temperature_rises():
    probs = np.array([[0.97, 0.02, 0.01], [0.1, 0.3, 0.6]])
    np.testing.assert_allclose(distill.soften(probs, 1.0), probs, rtol=1e-5)
    warm = distill.soften(probs, 4.0)
    np.testing.assert_allclose(warm.sum(axis=1), 1.0, rtol=1e-6)
    assert (warm.argsort(axis=1) == probs.argsort(axis=1)).all()
    assert (warm.max(axis=1) < probs.max(axis=1)).all()  # the wrong classes gain weight


def test_soft_target_loss_is_categorical_crossentropy_at_temperature_one_and_serializes():
    targets = np.array([[0.0, 1.0, 0.0], [0.2, 0.5, 0.3]], np.float32)
    probs = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
    plain = keras.losses.CategoricalCrossentropy()(targets, probs)
    np.testing.assert_allclose(distill.SoftTargetCrossEntropy(1.0)(targets, probs), plain, rtol=1e-5)
    loss = distill.SoftTargetCrossEntropy(4.0)
    soft_targets = distill.soften(targets, 4.0)
    expected = 16 * keras.losses.CategoricalCrossentropy()(soft_targets, distill.soften(probs, 4.0))
    np.testing.assert_allclose(loss(soft_targets, probs), expected, rtol=1e-4)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, distill.SoftTargetCrossEntropy) and again.temperature == 4.0


def test_the_loss_still_teaches_wrong_class_probabilities_far_below_keras_epsilon():
    import tensorflow as tf

    targets = distill.soften(np.array([[1 - 1e-6, 1e-6, 0.0]]), 4.0)  # the teachers' 1e-6 becomes 0.02
    logits = tf.Variable([[30.0, 0.0, -5.0]])  # the student gives that class about 1e-13
    with tf.GradientTape() as tape:
        loss = distill.SoftTargetCrossEntropy(4.0)(targets, tf.nn.softmax(logits))
    assert tape.gradient(loss, logits).numpy()[0, 1] < -0.01  # pushed up, not clipped to nothing


def test_options_refuse_a_temperature_without_teachers_and_bad_values():
    with pytest.raises(ConfigError, match="distill_temperature must be left at its default without teachers"):
        sc.Options(distill_temperature=2.0)
    for fields in ({"teachers": -1}, {"teachers": 2, "distill_temperature": 0.0}, {"teachers": True}):
        with pytest.raises(ConfigError):
            sc.Options(**fields)
    assert sc.Options(teachers=2, distill_temperature=2.0).teachers == 2


def _quick(tmp_path: Path, **fields) -> sc.Options:
    return sc.Options.quick(runs=str(tmp_path / "runs"), saved_models=str(tmp_path / "sm"), monitor=False, **fields)


def test_teachers_train_once_and_a_rerun_reuses_their_predictions(tmp_path):
    options = _quick(tmp_path, teachers=2)
    set_seed(options.seed)  # as run() does first: the training split's shuffle order depends on it
    data, config = sc.load_data(options), options.model_config()
    folder = tmp_path / "run"
    first = sc.distilled(options, config, data, folder, verbose=0)
    inputs, targets = distill.gather(first.train)
    classes = len(data.spec.class_names)
    assert targets.shape == (len(inputs[1]), classes)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    _, val_targets = distill.gather(first.val)
    assert ((val_targets == 0) | (val_targets == 1)).all() and (val_targets.sum(axis=1) == 1).all()
    saved = [folder / f"teacher{i}" / distill.PREDICTIONS for i in (1, 2)]
    one, two = (distill.load_predictions(path, len(targets)) for path in saved)
    assert not np.allclose(one, two), "two teachers of different seeds predict alike"
    stamps = [(path.stat().st_mtime_ns, (path.parent / checkpoint.STATE).stat().st_mtime_ns) for path in saved]

    set_seed(options.seed)
    again = sc.distilled(options, config, sc.load_data(options), folder, verbose=0)  # as a rerun command does
    assert [(path.stat().st_mtime_ns, (path.parent / checkpoint.STATE).stat().st_mtime_ns) for path in saved] == stamps
    np.testing.assert_allclose(distill.gather(again.train)[1], targets, rtol=1e-5)

    saved[1].write_bytes(b"not a numpy file")
    with pytest.raises(FileProblem, match="teacher2"):
        sc.distilled(options, config, data, folder, verbose=0)


def test_a_killed_distillation_resumes_in_its_folder_from_a_teachers_checkpoint(tmp_path):
    options = _quick(tmp_path, teachers=2)
    folder = Path(options.runs) / "classify" / "gru" / "20260101-000000"
    (folder / "teacher1" / "checkpoint").mkdir(parents=True)
    (folder / "teacher1" / checkpoint.STATE).write_bytes(b"")
    (folder / "command.json").write_text(json.dumps({"key": command_key(options)}))
    assert resolve_run_dir(options, "classify", "gru") == folder


def test_a_stop_inside_a_teacher_prints_the_runs_own_resume_command(tmp_path):
    run = tmp_path / "runs" / "classify" / "gru" / "20260101-000000"
    (run / "teacher2").mkdir(parents=True)
    (run / "command.json").write_text("{}")
    command = resume_command("seqzoo train classify", ["--teachers", "2"], run / "teacher2")
    assert command == "seqzoo train classify --teachers 2 --run-name 20260101-000000"


def test_a_distilled_model_exports_with_its_settings_and_reloads(tmp_path):
    result = sc.run(_quick(tmp_path, teachers=1, distill_temperature=2.0), verbose=0)
    card = json.loads((Path(result.export) / "card.json").read_text())
    assert card["hyperparameters"]["teachers"] == 1 and card["hyperparameters"]["distill_temperature"] == 2.0
    assert (result.run_dir / "teacher1" / checkpoint.STATE).exists()
    reloaded = load_keras(result.export)
    assert isinstance(reloaded.loss, distill.SoftTargetCrossEntropy) and reloaded.loss.temperature == 2.0
    batch = next(iter(result.details["data"].test))[0]
    np.testing.assert_allclose(reloaded(batch, training=False), result.model(batch, training=False), rtol=1e-5)
