"""seqzoo tune: search space, HyperModel, results/export, resume after a kill, chief + workers, bad input.

The tuner is driven through a tiny task module defined in THIS file (a real Keras
model on synthetic sequences that follows the task-module API), so the searches
take seconds; ``python -m tuning test_tuning`` imports it by module path.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.options import Result, TaskOptions, default, main_for, option, positive_int

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
ME = Path(__file__).stem  # the module path `python -m tuning` imports this toy task by

# ----------------------------------------------------------------------------- a toy task (the task-module API)

TASK = "toy"
OBJECTIVE = ("val_accuracy", "max")
T, F = 8, 3


@dataclass(frozen=True)
class Options(TaskOptions):
    """The toy task's settings: is the first channel's sum positive?"""

    samples: int = option(256, "training sequences", group="data")
    units: int = default("units", 8)
    epochs: int = default("epochs", 2)
    batch_size: int = default("batch_size", 32)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("samples", self.samples)


@dataclass
class ToyData:
    train: Any
    val: Any
    test: Any
    spec: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def load_data(options: Options) -> ToyData:
    import tensorflow as tf

    rng = np.random.default_rng(options.seed)

    def split(n):
        x = rng.normal(size=(n, T, F)).astype("float32")
        y = (x[:, :, 0].sum(axis=1) > 0).astype("int32")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(options.batch_size)

    samples = min(options.samples, 64) if options.small_data else options.samples
    return ToyData(
        split(samples),
        split(64),
        split(64),
        {"timesteps": T, "features": F},
        {"source": "synthetic", "seed": options.seed},
    )


def build_model(config, data):
    import keras

    import zoo

    x = keras.Input((T, F), name="x")  # (batch, time, features)
    h = zoo.apply(config, x)  # (batch, units')
    return zoo.SeqModel(x, keras.layers.Dense(2, activation="softmax")(h))


def compile(model, data, **kwargs):  # noqa: A001 (the task API's name)
    from zoo.training import compile_model

    return compile_model(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"], **kwargs)


def run(options: Options) -> Result:
    from tasks.common import resolve_run_dir
    from tasks.export import export, saved_models_root
    from zoo.training import fit

    data = load_data(options)
    config = options.model_config()
    model = compile(build_model(config, data), data, **options.training_kwargs())
    folder = resolve_run_dir(options, TASK, config.model)
    history = fit(model, data.train, data.val, epochs=options.epochs, run_dir=folder, verbose=0, **options.fit_kwargs())
    metrics = {"val_accuracy": float(history.history["val_accuracy"][-1])}
    exported = (
        export(model, task=TASK, config=config, root=saved_models_root(options.saved_models))
        if options.export
        else None
    )
    return Result(
        model=model, history=history, metrics=metrics, baselines={}, export=exported, run_dir=folder, options=options
    )


def report(result: Result) -> None:
    print(f"val_accuracy {result.metrics['val_accuracy']:.3f}; export: {result.export}")


def main(argv=None, prog="toy") -> int:
    return main_for(Options, run, report, argv, prog, description="toy task: is the first channel's sum positive?")


# ----------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _tune(*argv: str) -> list[str]:
    return [sys.executable, "-m", "tuning", ME, *argv]


# Epochs per trial: the toy's default, 2 (so --quick still means one epoch).
SMALL = ["--range", "units=4:8", "--range", "num_layers=1:2", "--verbose", "0"]


def _events(project: Path) -> list[dict]:
    from tuning.search import read_events

    return read_events(project)


def _trials(project: Path) -> dict[str, dict]:
    return {
        json.loads(p.read_text())["trial_id"]: json.loads(p.read_text()) for p in project.glob("trial_*/trial.json")
    }


def _tune_main(*argv: str) -> int:
    from tuning.cli import main

    return main([ME, *argv], prog="seqzoo tune")


# ----------------------------------------------------------------------------- search space (no TensorFlow work)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": ()}, "Empty search space: no model families"),
        ({"clipnorms": ()}, "Empty search space: no clipnorm"),
        ({"models": ("lstm",), "pins": {"num_layers": 2}}, "no model in lstm allows num_layers = 2"),
        ({"models": ("stacked_lstm",), "ranges": {"num_layers": (1, 1)}}, "stacked_lstm needs >= 2"),
        (
            {
                "models": ("gru",),
                "clipnorms": ("none",),
                "pins": {"units": 8, "num_layers": 1, "learning_rate": 0.01, "dropout": 0.0},
            },
            "every hyperparameter is pinned",
        ),
        ({"ranges": {"units": (64, 16)}}, "min > max for units"),
        ({"pins": {"width": 3}}, "Cannot pin unknown hyperparameter 'width'"),
        ({"models": ("lstm", "transformer")}, "Unknown model 'transformer'"),
        ({"pins": {"units": 8}, "ranges": {"units": (4, 8)}}, "both pinned and given a range"),
    ],
)
def test_search_space_refuses_bad_input(kwargs, message):
    from tuning.space import SearchSpace

    with pytest.raises(ValueError, match=message):
        SearchSpace(**kwargs)


def test_flag_parsing_and_depth_groups():
    from tuning.space import SearchSpace, parse_pins, parse_ranges

    assert parse_pins(["units=64", "clipnorm=1", "model=gru"]) == {"units": 64, "clipnorm": "1.0", "model": "gru"}
    assert parse_ranges(["learning_rate=1e-4:1e-3"]) == {"learning_rate": (1e-4, 1e-3)}
    for bad, message in [
        ("units=big:8", "expected an integer"),
        ("units=big", "expected units=MIN:MAX"),
        ("units=8:4", "min > max"),
        ("foo=1:2", "unknown"),
        ("model=lstm:gru", "is a choice, not a range"),
        ("units", "expected NAME=VALUE"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_ranges([bad])
    with pytest.raises(ValueError, match="unknown hyperparameter 'depth'"):
        parse_pins(["depth=3"])
    with pytest.raises(ValueError, match="expected 'none' or a positive number"):
        parse_pins(["clipnorm=-1"])
    space = SearchSpace(models=("lstm", "stacked_lstm", "gru", "simple_rnn"), ranges={"num_layers": (1, 3)})
    # lstm: exactly 1 (fixed); stacked_lstm: 2..3; the others: 1..3
    assert space.depth_groups() == {(1, 1): ["lstm"], (2, 3): ["stacked_lstm"], (1, 3): ["gru", "simple_rnn"]}
    assert space.units_grid() == [16, 32, 64, 128] and space.default("units") == 64
    pinned = SearchSpace(models=("lstm", "stacked_lstm", "gru"), pins={"num_layers": 3})
    assert pinned.models == ("stacked_lstm", "gru") and "lstm left out" in pinned.notes[0]


# ----------------------------------------------------------------------------- HyperModel


def _hypermodel(space=None, **flags):
    import keras_tuner as kt

    from tuning.hypermodel import SeqzooHyperModel
    from tuning.space import SearchSpace

    options = Options(samples=64, **flags)
    task = sys.modules[__name__]
    return SeqzooHyperModel(
        task, load_data(options), options, space or SearchSpace(), kt.Objective(*OBJECTIVE), verbose=0
    )


def test_hypermodel_respects_each_models_depth_and_pins():
    import keras_tuner as kt

    from tuning.space import SearchSpace

    space = SearchSpace(
        models=("lstm", "stacked_lstm", "gru"),
        ranges={"num_layers": (1, 3), "units": (4, 8)},
        pins={"learning_rate": 0.005},
    )
    hm = _hypermodel(space)
    for model, depth in [("lstm", 1), ("stacked_lstm", 2), ("gru", 1)]:  # explicit defaults per family
        hp = hm.fixed_hyperparameters()
        hp.values["model"] = model
        config, compile_kwargs, values = hm.draw(hp)
        assert values["num_layers"] == depth and values["clipnorm"] == "none"
        assert (config.model, config.num_layers, config.units) == (model, depth, 8)
        assert compile_kwargs["learning_rate"] == 0.005 and compile_kwargs["clipnorm"] is None
    assert [h.name for h in hp.space if h.name.startswith("num_layers")] == [
        "num_layers[stacked_lstm]",
        "num_layers[gru]",
    ]  # lstm (exactly one layer) has no depth to search
    # sampled trials: every value stays in its family's depth range
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective(*OBJECTIVE), max_trials=30, seed=3, hyperparameters=hm.fixed_hyperparameters()
    )
    hp = hm.fixed_hyperparameters()
    hm.draw(hp)
    oracle.update_space(hp)
    for _ in range(12):
        hp.values = oracle._random_values()
        hp2 = oracle.get_space()
        hp2.values = hp.values
        config, kw, _ = hm.draw(hp2)
        low, high = {"lstm": (1, 1), "stacked_lstm": (2, 3), "gru": (1, 3)}[config.model]
        assert low <= config.num_layers <= high and config.units in (4, 8) and kw["learning_rate"] == 0.005


def test_global_clipnorm_conflicts_with_clipnorm_search():
    with pytest.raises(ValueError, match="--global-clipnorm cannot be combined"):
        _hypermodel(global_clipnorm=1.0)


# ----------------------------------------------------------------------------- a whole search, in process


def test_search_writes_table_plot_and_exports_the_best(tmp_path, capsys):
    project, saved = tmp_path / "project", tmp_path / "saved"
    rc = _tune_main(
        "--max-trials",
        "4",
        "--project",
        str(project),
        "--saved-models",
        str(saved),
        "--samples",
        "64",
        "--models",
        "lstm,stacked_lstm,gru",
        "--clipnorms",
        "none,1.0",
        *SMALL,
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    import csv

    rows = list(csv.DictReader((project / "results.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and {r["status"] for r in rows} == {"COMPLETED"}
    for r in rows:
        low, high = {"lstm": (1, 1), "stacked_lstm": (2, 2), "gru": (1, 2)}[r["model"]]
        assert low <= int(r["num_layers"]) <= high and r["units"] in ("4", "8") and r["clipnorm"] in ("none", "1.0")
        assert 0 <= float(r["score"]) <= 1 and float(r["seconds"]) > 0 and r["tuner"] == "tuner0"
    assert "val_accuracy" in (project / "results.md").read_text().splitlines()[2]
    assert (project / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "trial  status  " in out and " val_accuracy " in out  # the printed table
    best = max(rows, key=lambda r: float(r["score"]))
    [export_dir] = list((saved / "toy").glob("*/1"))
    card = json.loads((export_dir / "card.json").read_text())
    hyper = card["hyperparameters"]
    assert card["model"] == best["model"] and card["config"]["num_layers"] == int(best["num_layers"])
    assert {k: str(hyper[k]) for k in ("model", "num_layers", "units", "clipnorm")} == {
        k: best[k] for k in ("model", "num_layers", "units", "clipnorm")
    }
    assert card["tuning"]["score"] == pytest.approx(max(float(r["score"]) for r in rows))
    # the export serves and matches the Keras model (test_export serves every model in a process
    # without seqzoo; here the point is that the exported model is the best trial's)
    import tensorflow as tf

    from tasks.export import load_keras

    x = np.random.default_rng(0).normal(size=(5, T, F)).astype("float32")
    loaded = tf.saved_model.load(str(export_dir))  # kept: its functions need its variables alive
    keras_model = load_keras(export_dir)
    np.testing.assert_allclose(np.asarray(loaded.serve(x)), np.asarray(keras_model(x)), rtol=1e-5, atol=1e-6)
    # the best trial's optimizer state came along (KerasTuner's checkpoint, then the export), not skipped
    assert int(keras_model.optimizer.iterations.numpy()) > 0
    # a second run with the same project resumes a finished search: nothing is re-run
    rc = _tune_main(
        "--max-trials",
        "4",
        "--project",
        str(project),
        "--no-export",
        "--samples",
        "64",
        "--models",
        "lstm,stacked_lstm,gru",
        "--clipnorms",
        "none,1.0",
        *SMALL,
    )
    assert rc == 0 and len([e for e in _events(project) if e["event"] == "end"]) == 4
    # ... and one with another space is refused
    rc = _tune_main("--max-trials", "4", "--project", str(project), "--models", "gru", *SMALL)
    assert rc == 2 and "was started with a different space" in capsys.readouterr().err


def test_tune_from_python_without_argv(tmp_path):
    from tuning import SearchSpace, tune
    from zoo.errors import ConfigError

    toy = sys.modules[__name__]
    space = SearchSpace(models=("gru",), clipnorms=("none",), ranges={"units": (4, 8)}, pins={"num_layers": 1})
    options = Options(samples=64, epochs=1, export=False)
    result = tune(toy, options, space=space, max_trials=2, project=tmp_path / "p", verbose=0)
    assert [r["trial"] for r in result.rows] == ["0", "1"] and {r["epochs"] for r in result.rows} == {1}
    assert result.export is None and result.paths["csv"].is_file()
    assert result.best.score == max(r["score"] for r in result.rows)
    record = json.loads((tmp_path / "p" / "search.json").read_text())["task_options"]
    assert record["samples"] == 64 and "export" not in record and "saved_models" not in record
    with pytest.raises(ConfigError, match="strategy must be 'none' in a search"):
        tune(toy, options.replace(strategy="mirrored"), space=space, project=tmp_path / "q")
    with pytest.raises(ConfigError, match="lr_schedule must be 'constant' in a search"):
        tune(toy, options.replace(lr_schedule="cosine"), space=space, project=tmp_path / "q")
    with pytest.raises(TypeError, match="options must be tasks.sequence_classification.Options"):
        tune("classify", options, space=space, project=tmp_path / "q")


# ----------------------------------------------------------------------------- bad input through the CLI


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    cases = [
        (
            ["--objective", "val_auc"],
            "Objective 'val_auc' is not logged by task 'toy'; it logs: accuracy, loss, val_accuracy, val_loss",
        ),
        (["--units", "32"], "--units is searched by the tuner; pin it with --pin units=VALUE"),
        (["--pin", "width=3"], "unknown hyperparameter 'width'"),
        (["--range", "units=64:16"], "min > max for units"),
        (["--models", ""], "Empty search space"),
        (["--worker", "127.0.0.1:notaport"], "expected HOST:PORT"),
        (["--tuner", "hyperband", "--quick"], "hyperband needs --epochs >= 2"),
        (["--unit", "32"], "--units is searched by the tuner"),  # an abbreviation argparse accepts
        (["--samples", "0"], "--samples must be a positive integer, got 0"),  # the task's field, as its flag
        (["--strategy", "mirrored"], "--strategy must be 'none' in a search"),
    ]
    for i, (argv, message) in enumerate(cases):
        rc = _tune_main("--project", str(tmp_path / f"p{i}"), "--samples", "64", *SMALL, *argv)
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)
    rc = _tune_main("--project", str(tmp_path / "p"), "--max-trials", "0", *SMALL)
    assert rc == 2 and "expected a positive integer" in capsys.readouterr().err
    from tuning.cli import main

    assert main(["no_such_task_module"]) == 2
    assert "Unknown task 'no_such_task_module'" in capsys.readouterr().err


def test_port_in_use_and_unreachable_chief(tmp_path, capsys, monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)  # a clean start, whatever the shell exported
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = _tune_main("--project", str(tmp_path / "p"), "--chief", f"127.0.0.1:{port}", *SMALL)
        err = capsys.readouterr().err
        assert rc == 2 and f"Cannot bind the chief to 127.0.0.1:{port}" in err and "already in use" in err
    from tuning.distributed import free_port

    port = free_port()
    start = time.monotonic()
    rc = _tune_main("--project", str(tmp_path / "p"), "--worker", f"127.0.0.1:{port}", "--connect-timeout", "1", *SMALL)
    err = capsys.readouterr().err
    assert rc == 2 and f"Cannot reach the tuning chief at 127.0.0.1:{port} within 1 s" in err
    assert time.monotonic() - start < 15
    assert not [k for k in os.environ if k.startswith("KERASTUNER_")]  # the role ends with the search
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    rc = _tune_main("--project", str(tmp_path / "q"), *SMALL)  # a stray KerasTuner variable is refused
    assert rc == 2 and "KERASTUNER_ORACLE_IP" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume after a kill


def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path):
    project = tmp_path / "project"
    argv = _tune(
        "--max-trials", "3", "--project", str(project), "--no-export", "--samples", "512", "--models", "gru", *SMALL
    )
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    first = subprocess.Popen(argv, env=_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:  # kill it while trial 1 runs, after trial 0 ended
        while time.monotonic() < deadline and first.poll() is None:
            seen = {(e["event"], e["trial"]) for e in _events(project)}
            if ("end", "0") in seen and ("start", "1") in seen:
                break
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    before = _trials(project)
    assert before["0"]["status"] == "COMPLETED" and before["1"]["status"] == "RUNNING"
    score0 = before["0"]["score"]

    second = subprocess.run(argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    after = _trials(project)
    assert sorted(after) == ["0", "1", "2"] and {t["status"] for t in after.values()} == {"COMPLETED"}
    assert after["0"]["score"] == score0  # the finished trial was kept, not re-run
    events = _events(project)
    ends = [e["trial"] for e in events if e["event"] == "end"]
    assert sorted(ends) == ["0", "1", "2"]  # each trial finished exactly once
    pids = {e["pid"] for e in events}
    assert len(pids) == 2
    # trial 1 was interrupted in the first process and re-run from its start in the second
    assert [e["pid"] == first.pid for e in events if e["trial"] == "1" and e["event"] == "start"] == [True, False]


# ----------------------------------------------------------------------------- chief + two workers


@pytest.mark.slow  # three processes (29 s); tests/test_distribute.py keeps multi-worker training in the default suite
def test_chief_and_two_workers_share_the_trials(tmp_path):
    project = tmp_path / "project"
    argv = _tune(
        "--max-trials",
        "4",
        "--project",
        str(project),
        "--samples",
        "64",
        "--saved-models",
        str(tmp_path / "saved"),
        "--models",
        "gru,simple_rnn",
        *SMALL,
        "--epochs",
        "1",
        "--workers",
        "2",
        "--timeout",
        "240",
    )
    proc = subprocess.run(argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "serving the oracle on 127.0.0.1:" in proc.stdout
    import csv

    rows = list(csv.DictReader((project / "results.csv").open()))  # written by the chief
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    by_worker = {w: sum(r["tuner"] == w for r in rows) for w in ("worker0", "worker1")}
    assert by_worker["worker0"] >= 1 and by_worker["worker1"] >= 1 and sum(by_worker.values()) == 4, by_worker
    ends = [e for e in _events(project) if e["event"] == "end"]
    assert sorted(e["trial"] for e in ends) == [str(i) for i in range(4)]
    assert len({e["pid"] for e in ends}) == 2  # two worker processes ran them
    assert len(list((tmp_path / "saved" / "toy").glob("*/1/card.json"))) == 1


# ----------------------------------------------------------------------------- the real classify task


@pytest.mark.slow
def test_tune_real_classify_task_quick(tmp_path):
    """JapaneseVowels (sktime's offline copy), --quick: 3 trials, table, export with hyperparameters in the card."""
    project, saved = tmp_path / "project", tmp_path / "saved"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuning",
            "classify",
            "--quick",
            "--max-trials",
            "3",
            "--project",
            str(project),
            "--saved-models",
            str(saved),
            "--models",
            "gru,lstm",
            "--range",
            "units=8:16",
            "--verbose",
            "0",
        ],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import csv

    rows = list(csv.DictReader((project / "results.csv").open()))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    [card] = [json.loads(p.read_text()) for p in (saved / "classify").glob("*/1/card.json")]
    assert card["hyperparameters"]["model"] in ("gru", "lstm") and card["tuning"]["objective"] == [
        "val_accuracy",
        "max",
    ]
    assert card["tuning"]["score"] == pytest.approx(max(float(r["score"]) for r in rows))


# ----------------------------------------------------------------------------- bayesian and hyperband


def _rows(project: Path) -> list[dict]:
    import csv

    return list(csv.DictReader((project / "results.csv").open()))


@pytest.mark.slow  # the one Bayesian search (17 s); the random search stays in the default suite
def test_bayesian_runs_the_gaussian_process_after_its_random_trials(tmp_path, capsys):
    """4 trials: 2 random, then 2 proposed by the Gaussian process (on the conditional depth space)."""
    project, saved = tmp_path / "project", tmp_path / "saved"
    rc = _tune_main(
        "--tuner",
        "bayesian",
        "--max-trials",
        "4",
        "--initial-points",
        "2",
        "--project",
        str(project),
        "--saved-models",
        str(saved),
        "--samples",
        "64",
        "--models",
        "gru,simple_rnn",
        *SMALL,
        "--epochs",
        "1",
    )
    out, err = capsys.readouterr()
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "bayesian: the first 2 completed trials are random, then the Gaussian process proposes" in out
    from tuning.search import SIDECAR

    oracle = json.loads((project / "oracle.json").read_text())
    assert oracle["num_initial_points"] == 2
    rows = _rows(project)
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and {r["status"] for r in rows} == {"COMPLETED"}
    scores = [float(r["score"]) for r in rows]
    assert all(np.isfinite(s) and 0 <= s <= 1 for s in scores)
    for r in rows:
        low, high = {"gru": (1, 2), "simple_rnn": (1, 2)}[r["model"]]
        assert low <= int(r["num_layers"]) <= high and r["units"] in ("4", "8") and r["epochs"] == "1"
        assert 1e-4 <= float(r["learning_rate"]) <= 1e-2 and r["clipnorm"] in ("none", "0.5", "1.0", "5.0")
        assert json.loads((project / f"trial_{r['trial']}" / SIDECAR).read_text())["epochs_run"] == 1
    # every trial is a distinct point (the process did not re-propose a tried one)
    keys = {tuple(r[c] for c in ("model", "num_layers", "units", "clipnorm", "learning_rate", "dropout")) for r in rows}
    assert len(keys) == 4
    card = json.loads(next((saved / "toy").glob("*/1/card.json")).read_text())
    assert card["tuning"]["score"] == pytest.approx(max(scores)) and card["tuning"]["trials"] == 4
    best = rows[int(np.argmax(scores))]
    assert card["tuning"]["trial"] == best["trial"] and card["hyperparameters"]["model"] == best["model"]
    # --initial-points belongs to bayesian only, and must be positive
    for argv, message in [
        (["--tuner", "random", "--initial-points", "2"], "--initial-points is for --tuner bayesian"),
        (["--tuner", "bayesian", "--initial-points", "0"], "--initial-points 0, expected a positive"),
    ]:
        rc = _tune_main("--project", str(tmp_path / "bad"), "--overwrite", "--samples", "64", *SMALL, *argv)
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, err


def test_bayesian_default_leaves_trials_to_the_gaussian_process():
    from tuning.search import initial_points, searched_dimensions
    from tuning.space import SearchSpace

    # the default space: model, num_layers[stacked_lstm], num_layers[gru], units, clipnorm, learning_rate, dropout
    assert searched_dimensions(_hypermodel(SearchSpace())) == 7
    pinned = SearchSpace(models=("gru",), clipnorms=("none",), pins={"units": 8, "num_layers": 1, "dropout": 0.0})
    assert searched_dimensions(_hypermodel(pinned)) == 1  # learning_rate alone
    assert initial_points(10, 7) == 5  # KerasTuner's own default (21) would leave the GP nothing of 10 trials
    assert initial_points(100, 7) == 21 and initial_points(3, 7) == 2 and initial_points(10, 1) == 3


@pytest.mark.slow  # 15 s; the random search stays in the default suite
def test_hyperband_runs_its_brackets_with_growing_epochs(tmp_path, capsys):
    """--epochs 3 (max_epochs 3, factor 3): bracket 1 = 3 one-epoch trials, then the best of them trained on
    to 3 epochs (2 more); bracket 0 = 2 fresh three-epoch trials: 6 trials, 3 + 2 + 6 = 11 epochs."""
    project, saved = tmp_path / "project", tmp_path / "saved"
    rc = _tune_main(
        "--tuner",
        "hyperband",
        "--project",
        str(project),
        "--saved-models",
        str(saved),
        "--samples",
        "64",
        "--models",
        "gru",
        "--clipnorms",
        "none",
        "--range",
        "units=4:8",
        "--pin",
        "num_layers=1",
        "--verbose",
        "0",
        "--epochs",
        "3",
    )
    out, err = capsys.readouterr()
    assert rc == 0, out[-3000:] + err[-3000:]
    from tuning.search import SIDECAR

    rows = _rows(project)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"COMPLETED"}
    scores = [float(r["score"]) for r in rows]
    assert all(np.isfinite(s) and 0 <= s <= 1 for s in scores)
    trials = _trials(project)
    hp = {tid: t["hyperparameters"]["values"] for tid, t in trials.items()}
    ids = sorted(hp)
    assert [hp[t]["tuner/epochs"] for t in ids] == [1, 1, 1, 3, 3, 3]
    assert [hp[t]["tuner/initial_epoch"] for t in ids] == [0, 0, 0, 1, 0, 0]
    assert [r["epochs"] for r in rows] == ["1", "1", "1", "3", "3", "3"]
    run = {t: json.loads((project / f"trial_{t}" / SIDECAR).read_text())["epochs_run"] for t in ids}
    assert [run[t] for t in ids] == [1, 1, 1, 2, 3, 3] and sum(run.values()) == 11  # trials trained unequally
    # the continued trial is the best one-epoch trial, with its hyperparameters
    parent = hp[ids[3]]["tuner/trial_id"]
    assert trials[parent]["score"] == max(trials[t]["score"] for t in ids[:3])
    searched = ("model", "units", "clipnorm", "learning_rate", "dropout")
    assert {k: hp[ids[3]][k] for k in searched} == {k: hp[parent][k] for k in searched}
    card = json.loads(next((saved / "toy").glob("*/1/card.json")).read_text())
    best = rows[int(np.argmax(scores))]
    assert card["tuning"]["score"] == pytest.approx(max(scores)) and card["tuning"]["trial"] == best["trial"]
    assert card["hyperparameters"]["epochs"] == int(best["epochs"])
