"""The benchmark tables' arithmetic and what the benchmarks run (the timings themselves are measured, not tested)."""

import math
from pathlib import Path

from benchmarks.train_speed import REST, Shape, breakdown_table, table


def _row(**tok_s):
    return {"cell": "lstm", "layers": 1, "precision": "bf16", **tok_s}


def test_breakdown_splits_each_step_into_recurrent_layers_and_the_rest():
    shape = Shape(batch=10, seq_len=100)  # 1,000 tokens per step: 1,000 tok/s is 1,000 ms
    row = _row(**{"seqzoo": 20_000, "seqzoo" + REST: 100_000, "torch": 25_000, "torch" + REST: 200_000})
    lines = breakdown_table([row], ["seqzoo", "torch"], shape).splitlines()
    seqzoo = [c.strip() for c in lines[2].strip("|").split("|")]
    torch = [c.strip() for c in lines[3].strip("|").split("|")]
    # seqzoo: step 50 ms, rest 10 ms, recurrent 40 ms; torch: 40, 5, 35 ms.
    assert seqzoo[3:] == ["seqzoo", "50.0", "10.0", "40.0", "0.80x", "0.50x", "0.88x"]
    assert torch[3:] == ["torch", "40.0", "5.0", "35.0", "1.00x", "1.00x", "1.00x"]


def test_table_reports_the_per_round_ratio_range():
    row = _row(
        seqzoo=110.0,
        keras=50.0,
        torch=100.0,
        **{"seqzoo/torch rounds": [0.9, 1.3, 1.1], "seqzoo setup": 0.5, "keras setup": 0.2},
    )
    cells = [c.strip() for c in table([row], ["seqzoo", "keras", "torch"]).splitlines()[2].strip("|").split("|")]
    assert cells[6:] == ["1.10x", "0.50x", "0.90-1.30x", "+120.0%", "0.50 / 0.20"]


def test_classify_quality_names_each_model_setting_as_its_flag_and_the_task_defaults():
    from benchmarks import classify_quality as cq

    assert cq.flags(cq.SETTINGS["bidirectional"]) == "--cell gru"
    assert cq.flags({"lr_schedule": "cosine", "units": 32}) == "--lr-schedule cosine --units 32"
    row = {"accuracy": 0.9, "macro_f1": 0.8, "seconds": 1.0, "params": 10, "flags": ""}
    text = cq.section({"gru": [row]}, 1, (0.0, 0.0))
    assert (
        "Task defaults: lr_schedule=constant, pooling=last, noise=0.0, model=gru, units=64, dropout=0.2, "
        "epochs=60, batch_size=16, learning_rate=0.003."
    ) in text


def test_classify_quality_reports_stored_runs_of_the_same_recipe_without_training_again(tmp_path, monkeypatch):
    from benchmarks import classify_quality as cq
    from studies.store import RunStore
    from tasks.sequence_classification import Options

    def row(seed, accuracy, recipe):
        labels = [0, 1, 1, 0]
        probs = [[0.9, 0.1] if label == 0 else [0.2, 0.8] for label in labels]
        return {"key": "GunPoint", "seed": seed, "accuracy": accuracy, "macro_f1": accuracy, "seconds": 1.0,
                "params": 10, "flags": "--preset best", "recipe": recipe, "probs": probs, "labels": labels}  # fmt: skip

    best = cq.recipe_of("GunPoint", "best")
    # GunPoint's 50 training series make 4 batches, so min_steps, not epochs, sets what the runs train
    assert "min_steps" not in best and best["epochs"] == math.ceil(Options.PRESETS["best"]["min_steps"] / 4)
    store = RunStore(tmp_path / "store")
    for r in (row(0, 0.75, best), row(1, 1.0, best), row(1, 0.0, {**best, "epochs": 1})):  # the last: another recipe
        store.put({"key": r["key"], "seed": r["seed"], "recipe": r["recipe"]}, r)
    results = tmp_path / "RESULTS.md"
    argv = ["--preset", "best", "--datasets", "GunPoint", "--seeds", "2", "--store", str(tmp_path / "store")]
    assert cq.main([*argv, "--results", str(results)]) == 0  # nothing left to train
    assert "| GunPoint | 2 | 87.50% ± 17.68% | 75.00% | 100.00% | 100.00% |" in results.read_text()
    assert len(store.path.read_text().splitlines()) == 3
    # a preset whose new epochs leave GunPoint's training as it was keeps GunPoint's runs; more epochs do not
    monkeypatch.setitem(Options.PRESETS, "best", {**Options.PRESETS["best"], "epochs": best["epochs"] - 1})
    results.unlink()
    assert cq.main([*argv, "--results", str(results)]) == 0
    assert "| GunPoint | 2 | 87.50% ± 17.68% |" in results.read_text()
    monkeypatch.setitem(Options.PRESETS, "best", {**Options.PRESETS["best"], "epochs": best["epochs"] + 1})
    assert cq.recipe_of("GunPoint", "best") == {**best, "epochs": best["epochs"] + 1}


def test_monitor_overhead_compares_the_keras_step_with_the_monitored_one():
    import keras
    import numpy as np
    import tensorflow as tf

    import zoo
    from benchmarks.monitor_overhead import compiled_step_overhead
    from zoo import training

    ids = np.random.default_rng(0).integers(0, 10, (16, 6)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((ids, ids)).batch(8)
    inputs = keras.Input((None,), dtype="int32")
    body = zoo.apply(zoo.ModelConfig("lstm", units=4, return_sequences=True), keras.layers.Embedding(10, 4)(inputs))
    model = zoo.SeqModel(inputs, keras.layers.Dense(10)(body))
    training.compile_model(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    training.fit(model, data, epochs=1, verbose=0, monitor=False)
    assert np.isfinite(compiled_step_overhead(model, data, repeats=2, calls=1))
    assert model.training_plan is None  # Keras's own step again afterwards


def test_recipe_selection_never_opens_the_test_file(tmp_path, monkeypatch):
    """classify_select scores recipes on folds cut from the training file alone: it runs with no test
    file beside the training file, and every file the task reads is one of its folds."""
    import shutil

    from benchmarks import classify_select as cs
    from tasks.sequence_classification import data as D

    train, test = D.bundled_paths("JapaneseVowels")
    alone = tmp_path / "JapaneseVowels_TRAIN.ts"
    shutil.copy(train, alone)
    read, real_read_ts = [], D.read_ts
    monkeypatch.setattr(D, "read_ts", lambda path: read.append(Path(path)) or real_read_ts(path))
    argv = ["--train", str(alone), "--quick", "--recipes", "gru_last", "--folds", "2", "--jobs", "1"]
    assert cs.main(argv) == 0
    assert read and all(
        p.name in {"fold0_fit.ts", "fold0_heldout.ts", "fold1_fit.ts", "fold1_heldout.ts"} for p in read
    )
    assert test.resolve() not in {p.resolve() for p in read}
    assert not any("TEST" in p.name for p in tmp_path.rglob("*"))


def test_folds_partition_the_training_cases_and_keep_every_class(tmp_path):
    from benchmarks import classify_select as cs
    from tasks.sequence_classification import data as D

    train = D.bundled_paths("JapaneseVowels")[0]
    _, cases, labels = cs.split_ts(train)
    pairs = cs.write_folds(train, 3, tmp_path)
    held = [cs.split_ts(h)[1] for _, h in pairs]
    assert sorted(sum(held, [])) == sorted(cases)  # every case held out exactly once
    for (fit, _), out in zip(pairs, held, strict=True):
        fit_cases = cs.split_ts(fit)[1]
        assert not set(fit_cases) & set(out) and len(fit_cases) + len(out) == len(cases)
        assert {c.rsplit(":", 1)[1] for c in out} == set(labels)  # stratified: each class in each fold
    assert (
        cs.summarize(
            [
                {"recipe": "a", "split": 0, "fold": 0, "accuracy": 0.9, "log_loss": 0.3},
                {"recipe": "b", "split": 0, "fold": 0, "accuracy": 0.9, "log_loss": 0.2},
            ],
            1,
        )[0]["recipe"]
        == "b"
    )  # accuracy ties go to the lower log loss


def test_selection_rows_of_a_changed_recipe_are_left_out(tmp_path):
    """A stored fold whose recipe settings differ from today's RECIPES ran something else: it must
    run again rather than count for the recipe (rows from before settings were stored still count)."""
    import json

    from benchmarks import classify_select as cs

    current = cs.recipe_options("gru_last")
    rows = [
        {"recipe": "gru_last", "fold": 0, "accuracy": 0.9, "log_loss": 0.3, "settings": current},
        {"recipe": "gru_last", "fold": 1, "accuracy": 0.9, "log_loss": 0.3, "settings": {**current, "units": 7}},
        {"recipe": "gru_last", "fold": 2, "accuracy": 0.9, "log_loss": 0.3},
    ]
    store = tmp_path / "store.jsonl"
    store.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["fold"] for r in cs.load_done(store)] == [0, 2]


def test_classify_best_preset_is_the_recipe_the_committed_selection_chose():
    from benchmarks import classify_select as cs
    from tasks import sequence_classification as classify
    from tasks.sequence_classification import Options

    # the finalists ran on 3 cuts into 5 folds; the preset is the best of them over all 15 held-out folds
    summary = cs.summarize(cs.load_done(cs.SELECTION / "JapaneseVowels.jsonl"), folds=5, repeats=3)
    assert summary[0]["complete"]
    preset = dict(Options.PRESETS["best"])
    min_steps = preset.pop("min_steps")
    assert preset == cs.recipe_options(summary[0]["recipe"])
    # min_steps only lengthens smaller sets: JapaneseVowels' 270 training series keep the selected epochs
    options = Options.preset("best")
    assert classify.epochs_for(options, math.ceil(270 / options.batch_size)) == options.epochs
    assert classify.epochs_for(options, math.ceil(40 / options.batch_size)) == math.ceil(min_steps / 3) > options.epochs
