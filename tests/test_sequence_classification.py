"""Sequence classification: real JapaneseVowels data, .ts files written here, IMDB through
tfds.testing.mock_data, every zoo model, and an export served by a separate Python process."""

from __future__ import annotations

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

import tasks.sequence_classification as sc
from tasks.sequence_classification import data as D
from zoo.config import MODEL_NAMES
from zoo.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _options(*, quick: bool = False, tmp_path: Path | None = None, **fields) -> sc.Options:
    if tmp_path is not None:
        fields = {"runs": str(tmp_path / "runs"), "saved_models": str(tmp_path / "sm"), **fields}
    return sc.Options.quick(**fields) if quick else sc.Options(**fields)


def _write_ts(path: Path, cases: list[str], *, dims: int = 2, labels: str = "a b", missing: bool = False) -> Path:
    header = textwrap.dedent(f"""\
        @problemName Toy
        @timeStamps false
        @missing {str(missing).lower()}
        @univariate {str(dims == 1).lower()}
        @dimensions {dims}
        @equalLength false
        @classLabel true {labels}
        @data
        """)
    path.write_text(header + "\n".join(cases) + "\n")
    return path


GOOD = ["1,2,3:4,5,6:a", "2,3:5,6:b", "0,1,2,3:1,1,1,1:a", "5,4:3,2:b"]


# ----------------------------------------------------------------------------- data


def test_japanese_vowels_splits_padding_and_train_only_normalization():
    data = sc.load_data(_options())
    spec, p = data.spec, data.provenance
    assert (p["dataset"], p["train"], p["val"], p["test"], p["classes"], p["channels"]) == (
        "JapaneseVowels",
        243,
        27,
        370,
        9,
        12,
    )
    assert spec.class_names == [str(i) for i in range(1, 10)]
    assert spec.train_max_length == 26 and p["lengths"] == "7-29"
    # normalization: mean/std of the real steps of the training split (not val, not test)
    full = D.read_ts(p["train_file"])
    train_idx, val_idx = D.stratified_split(full.labels, 0.1, 0)
    assert not set(train_idx) & set(val_idx) and len(set(full.labels[val_idx])) == 9  # stratified
    steps = np.concatenate([full.values[i] for i in sorted(train_idx)])
    np.testing.assert_allclose(spec.mean, steps.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spec.std, steps.std(0), rtol=1e-4)
    # test batches: padded to the longest test sequence (29), lengths kept, padding zero: nothing truncated
    (values, lengths), labels = next(iter(data.test.unbatch().batch(400)))
    assert values.shape == (370, 29, 12) and int(tf.reduce_max(lengths)) == 29 and int(tf.reduce_min(lengths)) == 7
    steps = tf.range(29)[None, :] >= lengths[:, None]
    assert float(tf.reduce_max(tf.abs(tf.boolean_mask(values, steps)))) == 0.0
    assert sorted(set(labels.numpy().tolist())) == list(range(9))


def test_padding_is_masked_and_length_is_respected():
    """Outputs do not depend on what or how much padding follows each length, for masked and fixed-length models."""
    data = sc.load_data(_options(quick=True))
    (values, lengths), _ = next(iter(data.test))
    values, lengths = values.numpy(), lengths.numpy()
    longer = np.concatenate([values, np.full((len(values), 7, 12), np.nan, np.float32)], axis=1)
    garbage = np.where(np.arange(values.shape[1])[None, :, None] < lengths[:, None, None], values, 123.0)
    for name in ("gru", "bidirectional", "unshared_rnn"):
        model = sc.build_model(_options(model=name).model_config(), data)
        ref = model([values, lengths]).numpy()
        np.testing.assert_allclose(model([longer, lengths]).numpy(), ref, atol=1e-6)
        np.testing.assert_allclose(model([garbage.astype(np.float32), lengths]).numpy(), ref, atol=1e-6)
        # a real step removed changes the answer (the mask is not masking everything)
        assert np.abs(model([values, np.maximum(lengths - 1, 1)]).numpy() - ref).max() > 1e-4


def test_conv_front_end_never_sees_padding_and_saves(tmp_path):
    """The Conv1D front end zeroes padded steps before each convolution, so padding cannot leak into
    the last real steps through its kernels; the layer round-trips through model.keras."""
    data = sc.load_data(_options(quick=True, conv_filters=4))
    (values, lengths), _ = next(iter(data.test))
    values, lengths = values.numpy(), lengths.numpy()
    garbage = np.where(np.arange(values.shape[1])[None, :, None] < lengths[:, None, None], values, 123.0)
    model = sc.build_model(_options(model="bidirectional", units=4).model_config(), data, pooling="mean")
    assert model.get_layer("conv_front_end").filters == 4
    ref = model([values, lengths]).numpy()
    np.testing.assert_allclose(model([garbage.astype(np.float32), lengths]).numpy(), ref, atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded([values, lengths]).numpy(), ref, atol=1e-6)


def test_resample_interpolates_the_real_steps_only():
    """Each series' real steps land on evenly spaced points (numpy's interp, per channel); NaN padding,
    a length-1 series and the unshared_rnn's fixed length are all handled inside the model."""
    from tasks.sequence_classification.layers import Resample

    rng = np.random.default_rng(0)
    series = [rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 2, 7, 12)]
    padded = np.full((4, 12, 3), np.nan, np.float32)
    for i, s in enumerate(series):
        padded[i, : len(s)] = s
    lengths = np.array([len(s) for s in series], np.int32)
    out = Resample(9)([padded, lengths]).numpy()
    for i, s in enumerate(series):
        where = np.linspace(0, len(s) - 1, 9)
        expected = np.stack([np.interp(where, np.arange(len(s)), s[:, c]) for c in range(3)], -1)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)

    longest = sc.load_data(_options(quick=True, resample=True))
    assert longest.provenance["resampled_to"] == longest.spec.train_max_length  # the default length
    data = sc.load_data(_options(quick=True, resample=True, max_length=20))
    assert data.provenance["resampled_to"] == 20 and data.spec.to_card()["resampled_to"] == 20
    (values, lengths), _ = next(iter(data.test))
    values, lengths = values.numpy(), lengths.numpy()
    longer = np.concatenate([values, np.full((len(values), 5, 12), np.nan, np.float32)], axis=1)
    model = sc.build_model(_options(model="unshared_rnn", units=4).model_config(), data)
    assert model.get_layer("resample").output.shape[1] == 20
    np.testing.assert_allclose(model([longer, lengths]).numpy(), model([values, lengths]).numpy(), atol=1e-6)


def test_dimension_shuffle_steps_the_body_over_channels_and_saves(tmp_path):
    """MLSTM-FCN's dimension shuffle: the recurrent body reads (channels, resampled steps), so its
    input has one step per channel; padding stays invisible (resample reads real steps only)."""
    data = sc.load_data(_options(quick=True, resample=True, dimension_shuffle=True, fcn_filters=4))
    (values, lengths), _ = next(iter(data.test))
    values, lengths = values.numpy(), lengths.numpy()
    garbage = np.where(np.arange(values.shape[1])[None, :, None] < lengths[:, None, None], values, 123.0)
    model = sc.build_model(_options(model="bidirectional", units=4).model_config(), data, pooling="mean")
    assert tuple(model.get_layer("dimension_shuffle").output.shape) == (None, 12, data.spec.resample_length())
    assert data.spec.to_card()["dimension_shuffle"] is True
    ref = model([values, lengths]).numpy()
    np.testing.assert_allclose(model([garbage.astype(np.float32), lengths]).numpy(), ref, atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded([values, lengths]).numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("squeeze_excite", [False, True])
def test_fcn_branch_is_blind_to_padding_learns_and_saves(tmp_path, squeeze_excite):
    """LSTM-FCN: the convolutional branch's batch statistics, convolutions, channel gates
    (MLSTM-FCN's squeeze-and-excitation) and mean see only real steps (a batch with garbage
    padding trains to the same weights), and it round-trips."""
    data = sc.load_data(_options(quick=True, fcn_filters=4, squeeze_excite=squeeze_excite))
    (values, lengths), labels = next(iter(data.test))
    values, lengths = values.numpy(), lengths.numpy()
    garbage = np.where(np.arange(values.shape[1])[None, :, None] < lengths[:, None, None], values, 123.0)
    config = _options(model="simple_rnn", units=4).model_config()  # the body is beside the point: the cheapest
    models = []
    for batch in (values, garbage.astype(np.float32)):
        keras.utils.set_random_seed(0)
        model = sc.compile(sc.build_model(config, data), data, learning_rate=1e-2)
        model.train_on_batch([batch, lengths], labels)  # batch norm's statistics move in training mode
        models.append(model)
    branch = models[0].get_layer("fcn_branch")
    assert branch.filters == 4 and len(branch.excites) == (2 if squeeze_excite else 0)
    ref = models[0]([values, lengths]).numpy()
    np.testing.assert_allclose(models[1]([garbage.astype(np.float32), lengths]).numpy(), ref, atol=1e-5)
    models[0].save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded([values, lengths]).numpy(), ref, atol=1e-6)


def test_fcn_branch_inference_statistics_settle_within_a_small_sets_updates():
    """A set of 40 series gets a few hundred updates; batch norm's moving statistics must reach the
    batch's own by then, or inference normalizes with the initial variance of 1 (near-chance accuracy)."""
    from tasks.sequence_classification.layers import FCNBranch

    branch = FCNBranch(4)
    x = np.random.default_rng(0).normal(size=(8, 20, 3)).astype(np.float32)
    for _ in range(60):  # 20 epochs of 3 batches
        branch(x, training=True)
    np.testing.assert_allclose(branch(x, training=False).numpy(), branch(x, training=True).numpy(), atol=0.05)


def test_min_steps_raises_the_epochs_of_a_small_training_split(tmp_path):
    options = _options(
        quick=True, tmp_path=tmp_path, model="simple_rnn", batch_size=8, min_steps=10, export=False, monitor=False
    )
    result = sc.run(options, verbose=0)
    steps_per_epoch = -(-result.details["data"].provenance["train"] // 8)
    assert result.options.epochs == -(-10 // steps_per_epoch) > 1
    assert len(result.history.history["loss"]) == result.options.epochs
    with pytest.raises(ConfigError, match="min_steps"):
        sc.Options(min_steps=-1)


def test_resample_and_the_conv_options_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError, match="at least 2"):
        sc.Options(resample=True, max_length=1)
    with pytest.raises(ConfigError, match="True or False"):
        sc.Options(resample=29)
    with pytest.raises(ConfigError, match="squeeze_excite must be off without an FCN branch, got True"):
        sc.Options(squeeze_excite=True)
    with pytest.raises(ConfigError, match="dimension_shuffle must be off without resample, got True"):
        sc.Options(dimension_shuffle=True)
    for series_only in ({"resample": True}, {"fcn_filters": 8}, {"conv_filters": 8}):  # before any download
        with pytest.raises(ConfigError, match="series only"):
            sc.load_data(sc.Options(dataset="tfds:imdb_reviews", **series_only))


def test_every_zoo_model_trains_and_round_trips(tmp_path):
    data = sc.load_data(_options(quick=True, batch_size=64))
    (values, lengths), labels = next(iter(data.train))
    for name in MODEL_NAMES:
        args = _options(quick=True, model=name, units=8, pooling="mean" if name == "gru" else "last")
        config = args.model_config()
        model = sc.compile(sc.build_model(config, data), data, learning_rate=1e-2)
        before = model.evaluate(data.train, verbose=0)[0]
        for _ in range(3):
            model.train_on_batch([values, lengths], labels)
        assert model.evaluate(data.train, verbose=0)[0] < before, name
        if name == "unshared_rnn":
            assert model.get_layer("fit_length").timesteps == data.spec.train_max_length
        path = tmp_path / f"{name}.keras"
        model.save(path)
        again = keras.saving.load_model(path)
        np.testing.assert_allclose(again([values, lengths]), model([values, lengths]), atol=1e-6)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("cases", "kwargs", "error", "words"),
    [
        (["1,2:3,4:a", "oops"], {}, ValueError, "malformed"),
        (["1,2,3:4,5,6:a", "1,2:3,4:5,6:b"], {}, ValueError, "malformed"),  # 2 then 3 channels
        (["1,2,3:4,5:a", "1,2:3,4:b"], {}, ValueError, "unequal length"),
        (["1,?,3:4,5,6:a", "1,2:3,4:b"], {"missing": True}, ValueError, "case 1 has missing values"),
        (["1,2,3:a", ":b"], {"dims": 1}, ValueError, "case 2 is empty"),  # an all-padding sequence
    ],
    ids=["malformed", "unequal-channel-count", "unequal-channel-length", "missing-values", "empty-series"],
)
def test_bad_ts_files(tmp_path, cases, kwargs, error, words):
    path = _write_ts(tmp_path / "bad_TRAIN.ts", cases, **kwargs)
    with pytest.raises(error, match=words) as info:
        D.read_ts(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["hello world\n", "1,2,3:a\n4,5,6:b\n", "@data\n1,2,3:a\n", "\x00\xff binary"],
    ids=["plain-text", "no-headers", "only-data-header", "binary"],
)
def test_a_file_that_is_not_ts_is_called_malformed(tmp_path, text):
    path = tmp_path / "notts.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="malformed .ts file.*Expected the UEA/sktime format") as info:
        D.read_ts(path)
    assert str(path) in str(info.value)


def test_class_labels_keep_the_files_spelling(tmp_path):
    """sktime's reader lowercases labels; seqzoo serves them as the file writes them, so 'Up' stays
    'Up' and labels that differ only by case stay two classes."""
    path = _write_ts(tmp_path / "case.ts", ["1,2:3,4:Up", "2,3:4,5:up", "0,1:1,1:Up", "5,4:3,2:up"], labels="Up up")
    series = D.read_ts(path)
    assert series.labels.tolist() == ["Up", "up", "Up", "up"]
    assert D.class_names(series.labels) == ["Up", "up"]


def test_bad_input_through_the_command_line(tmp_path, capsys):
    good = _write_ts(tmp_path / "good.ts", GOOD)
    unseen = _write_ts(tmp_path / "unseen.ts", ["1,2:3,4:c", "1,2:3,4:a"], labels="a b c")
    three = _write_ts(tmp_path / "three.ts", ["1,2:3,4:5,6:a"], dims=3)
    (tmp_path / "notts.txt").write_text("hello world\n")
    runs = ["--runs", str(tmp_path / "runs"), "--no-export", "--quick"]
    expect = {
        ("--ts-train", str(tmp_path / "nope.ts"), "--ts-test", str(good)): "No .ts file at",
        ("--ts-train", str(good), "--ts-test", str(unseen)): "never occur in training",
        ("--ts-train", str(good), "--ts-test", str(three)): "channels",
        ("--ts-train", str(good)): "--ts-test must be set together with its twin",
        ("--dataset", "NoSuchSet"): "JapaneseVowels",
        ("--max-length", "0"): "--max-length must be a positive integer or None, got 0",
        ("--ts-train", str(tmp_path / "notts.txt"), "--ts-test", str(good)): "malformed .ts file",
    }
    for argv, words in expect.items():
        assert sc.main([*argv, *runs]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_user_ts_pair_trains(tmp_path):
    """A pair of .ts files by path, variable lengths, string labels: trains and reports."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(40):
        label = "up" if i % 2 else "down"
        n = int(rng.integers(3, 12))
        ramp = np.linspace(0, 1, n) * (1 if label == "up" else -1)
        cases.append(",".join(f"{v:.3f}" for v in ramp + rng.normal(0, 0.05, n)) + f":{label}")
    train = _write_ts(tmp_path / "r_TRAIN.ts", cases[:30], dims=1, labels="down up")
    test = _write_ts(tmp_path / "r_TEST.ts", cases[30:], dims=1, labels="down up")
    options = _options(
        ts_train=str(train), ts_test=str(test), epochs=15, units=8, export=False, batch_size=8, tmp_path=tmp_path
    )
    result = sc.run(options, verbose=0)
    assert result.details["data"].spec.class_names == ["down", "up"]
    assert result.metrics["accuracy"] >= 0.9 and np.sum(result.metrics["confusion_matrix"]) == 10


# ----------------------------------------------------------------------------- export


SERVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    export, inputs, out = sys.argv[1:]
    served = tf.saved_model.load(export)
    batch = np.load(inputs)
    result = {k: v.numpy() for k, v in served.serve(batch["values"], batch["lengths"]).items()}
    sig = served.signatures["serving_default"](values=tf.constant(batch["values"][:3]),
                                               lengths=tf.constant(batch["lengths"][:3]))
    empty = "no error"
    try:
        served.serve(batch["values"][:2], np.array([5, 0], np.int32))
    except tf.errors.InvalidArgumentError as exc:
        empty = exc.message
    assert not any(m.split(".")[0] in ("zoo", "tasks") for m in sys.modules), "the server imported seqzoo"
    result["class_name"] = np.array([name.decode() for name in result["class_name"]])
    np.savez(out, sig3=sig["probabilities"].numpy(), **result)
    print(json.dumps({"all_padding": empty}))
""")


def test_quick_run_exports_and_serves_in_a_separate_process(tmp_path, capsys):
    assert sc.main(["--quick", "--runs", str(tmp_path / "runs"), "--saved-models", str(tmp_path / "sm")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "macro-F1" in out and "confusion_matrix.png" in out
    export = tmp_path / "sm" / "classify" / "gru" / "1"
    assert f"export: {export}" in out
    card = json.loads((export / "card.json").read_text())
    assert card["spec"]["class_names"] == [str(i) for i in range(1, 10)]
    assert len(card["spec"]["normalization"]["mean"]) == 12 and card["metrics"]["n_test"] == 74
    assert (export / "labels.txt").read_text().split() == card["spec"]["class_names"]
    assert (export / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.glob("runs/classify/gru/*/confusion_matrix.png"))

    # raw (unnormalized) values of 5 test series, padded to 31 steps, another batch size than training
    series = D.read_ts(D.bundled_paths("japanese_vowels")[1])
    values, lengths = D.pad(series.values[:5], 31)
    np.savez(tmp_path / "in.npz", values=values, lengths=lengths)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", SERVER, str(export), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all-padding" in json.loads(proc.stdout.strip().splitlines()[-1])["all_padding"]
    served = np.load(tmp_path / "out.npz")

    from tasks.export import load_keras

    model = load_keras(export)
    expected = model([values, lengths]).numpy()
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(served["sig3"], expected[:3], atol=1e-5)
    np.testing.assert_allclose(served["probabilities"].sum(-1), 1.0, atol=1e-5)
    assert served["class_index"].tolist() == expected.argmax(-1).tolist()
    names = np.array(card["spec"]["class_names"])
    assert served["class_name"].tolist() == names[expected.argmax(-1)].tolist()


# ----------------------------------------------------------------------------- text (TFDS)


@pytest.mark.parametrize("teachers", [0, 1])
def test_imdb_with_mock_data(tmp_path, monkeypatch, teachers):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(D, "check_online", lambda name: None)  # mock_data fakes the download itself
    with tfds.testing.mock_data(num_examples=48):
        options = _options(
            dataset="tfds:imdb_reviews",
            quick=True,
            units=8,
            max_length=16,
            batch_size=16,
            data_dir=str(tmp_path / "tfds"),
            tmp_path=tmp_path,
            teachers=teachers,  # distillation gathers and replays text inputs too
        )
        result = sc.run(options, verbose=0)
    assert result.details["data"].spec.class_names == ["neg", "pos"]
    assert result.metrics["n_test"] == 48 and 0 <= result.metrics["accuracy"] <= 1
    served = tf.saved_model.load(str(result.export))
    texts = tf.constant(["a fine film", "dull and long, far too long"])
    out = served.serve(texts)
    np.testing.assert_allclose(out["probabilities"].numpy(), result.model(texts).numpy(), atol=1e-5)


def test_imdb_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    # an unresolvable host (RFC 2606 '.invalid'): the same failure as offline, also on a connected machine
    monkeypatch.setitem(D.DOWNLOAD_HOSTS, "imdb_reviews", ("seqzoo-test.invalid", 80))
    code = sc.main(["--dataset", "tfds:imdb_reviews", "--data-dir", str(tmp_path / "tfds"), "--quick"])
    err = capsys.readouterr().err
    assert code == 2 and "needs internet once" in err and "--data-dir" in err
