"""The exploding-gradients study: its committed report, a quick run, and its measuring parts."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from studies import cli
from studies import exploding_gradients as E

RESULTS = Path(E.__file__).resolve().parent / "results" / E.NAME


def _check(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert E.render(results) == report
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).stat().st_size > 10_000, f"plot {image} missing or empty"
    assert (out / "results.csv").read_text().count("\n") == len(results["rows"]) + 1
    return results


def test_committed_report_is_rendered_from_its_results():
    if not (RESULTS / "results.json").exists():
        pytest.skip("no committed full run in studies/results/exploding_gradients yet")
    results = _check(RESULTS)
    assert not results["quick"]
    assert len(results["settings"]["seeds"]) >= 5
    assert len(results["rows"]) == len(E._plan(results["settings"]))
    # Every test's unit is the seed: no "paired seeds" count above the number of seeds.
    report = (RESULTS / "report.md").read_text()
    assert f"({len(results['settings']['seeds']) * 3} paired seeds" not in report
    assert "Fisher" not in report


@pytest.mark.slow
def test_quick_run_report_comes_from_its_results(tmp_path):
    out = tmp_path / E.NAME
    assert cli.main([E.NAME, "--quick", "--seeds", "2", "--out", str(out)]) == 0
    results = _check(out)
    assert results["quick"]
    assert (out / "runs.jsonl").read_text().count("\n") == len(results["rows"])
    # Resuming reruns nothing: every run comes back from runs.jsonl with the same numbers.
    assert cli.main([E.NAME, "--quick", "--seeds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["rows"] == results["rows"]


def test_temporal_order_is_pascanus_task():
    L = 40
    x, y = E.temporal_order(500, L, np.random.default_rng(0))
    assert x.shape == (500, L, E.SYMBOLS) and y.shape == (500,)
    assert np.all(x.sum(-1) == 1)
    symbols = x.argmax(-1)
    for seq, label in zip(symbols, y, strict=True):
        marked = np.flatnonzero(seq < 2)
        assert len(marked) == 2
        assert L // 10 <= marked[0] < 2 * L // 10 and 5 * L // 10 <= marked[1] < 6 * L // 10
        assert label == seq[marked[0]] + 2 * seq[marked[1]]
    assert set(np.unique(y)) == {0, 1, 2, 3}


def test_solved_and_diverged_criteria():
    assert E.solved(0.009) and not E.solved(0.01) and not E.solved(None) and not E.solved(float("nan"))
    assert E.diverged(1.5, None) and E.diverged(1.5, float("nan")) and E.diverged(1.5, 1.7)
    assert not E.diverged(1.5, 1.4)
    assert not E.diverged(1.5, 1.55)  # no progress is not a blow-up


def test_spikes_skip_the_initial_transient():
    g = np.full(200, 1.0) + np.random.default_rng(0).uniform(0, 0.1, 200)
    g[0] = 1e6  # a fresh initialization's first gradient: not a spike
    g[3] = 1e3  # inside the warm-up: not a spike
    g[60] = 50.0  # a spike
    g[61] = 5.0  # 5x the running median: below the factor
    g[150:153] *= 100  # a burst of three steps
    assert E.spikes(g) == [60, 150, 151, 152]
    assert E.spike_ratio(g) == pytest.approx(max(g[150:153] / np.median(g[100:150])), rel=0.02)
    assert E.spikes([None, 1.0, 1.0]) == []


def _random_cell(kind, units=5, features=3, seed=0):
    rng = np.random.default_rng(seed)
    gates = 4 if kind == "lstm" else 1
    W = rng.normal(0, 0.5, (features, gates * units))
    U = rng.normal(0, 0.6, (units, gates * units))
    b = rng.normal(0, 0.3, gates * units)
    return W, U, b, rng.normal(size=(12, features))


@pytest.mark.parametrize("kind", ["lstm", "simple_rnn"])
def test_state_jacobian_matches_finite_differences(kind):
    W, U, b, x = _random_cell(kind)
    units = U.shape[0]
    norms = E.state_jacobian_norms(kind, x, W, U, b)
    steps = E.cell_states(kind, x, W, U, b)
    T = len(x)
    for t in (0, 4, T - 2):  # perturb h after step t, read h after the last step
        h, c = steps[t]["h"], steps[t].get("c")
        J = np.zeros((units, units))
        eps = 1e-6
        for j in range(units):
            d = np.zeros(units)
            d[j] = eps
            up = E.cell_states(kind, x[t + 1 :], W, U, b, h0=h + d, c0=c)[-1]["h"]
            down = E.cell_states(kind, x[t + 1 :], W, U, b, h0=h - d, c0=c)[-1]["h"]
            J[:, j] = (up - down) / (2 * eps)
        lag = T - 1 - t
        assert norms[lag - 1] == pytest.approx(np.linalg.norm(J, 2), rel=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "simple_rnn"])
def test_cell_equations_are_keras_layers(kind):
    import keras

    W, U, b, x = _random_cell(kind, seed=1)
    units = U.shape[0]
    layer_cls = keras.layers.LSTM if kind == "lstm" else keras.layers.SimpleRNN
    layer = layer_cls(units, return_sequences=True)
    layer.build((1, len(x), x.shape[1]))
    layer.set_weights([W.astype("float32"), U.astype("float32"), b.astype("float32")])
    keras_h = np.asarray(layer(x[None].astype("float32")))[0]
    ours = np.stack([s["h"] for s in E.cell_states(kind, x, W, U, b)])
    np.testing.assert_allclose(ours, keras_h, atol=1e-5)


def test_exploding_init_scales_every_gate_block():
    import keras

    import zoo

    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, zoo.apply(zoo.ModelConfig("lstm", units=6), inputs))
    layer = E.recurrent_layer(model)
    E.exploding_init(layer, 2.5, 4.0, np.random.default_rng(0))
    U = layer.cell.recurrent_kernel.numpy()
    for k in range(4):
        block = U[:, k * 6 : (k + 1) * 6]
        np.testing.assert_allclose(block.T @ block, 2.5**2 * np.eye(6), atol=1e-4)
    np.testing.assert_allclose(layer.cell.bias.numpy()[6:12], 4.0)
    assert not np.allclose(U[:, :6], U[:, 6:12])


def test_text_windows_and_chance_level():
    ids, vocab = E.encode_splits("abcab" * 200 + "xyz")
    assert vocab == 4  # a, b, c from training, plus id 0 for characters first seen later
    assert ids[2][-1] == 0
    x, y = E.windows(ids[0], 10, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (10, 8)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    uniform = np.arange(3000) % 3 + 1
    assert E.unigram_loss(uniform, uniform, 4) == pytest.approx(math.log(3), rel=1e-3)


def _stand_in_results(seeds: int = 5) -> dict:
    """Results as run() would hold them, with made-up runs: text simple_rnn diverges unclipped at lr 3 on
    seeds 0, 2, 3, 4 and at lr 1 on seed 4 (5 of 15 runs, 4 of 5 seeds); clipped spikes grow with the seed."""
    import argparse

    s = E._settings(argparse.Namespace(quick=False, seeds=seeds, clip=1.0, length=None, updates=None, text_file="x"))
    blown = {(3.0, 0), (3.0, 2), (3.0, 3), (3.0, 4), (1.0, 4)}
    shares = {g: 0.25 for g in E.GATES}
    runs = {}
    for task, m, clip, lr, seed in E._plan(s):
        div = task == "text" and m == "simple_rnn" and clip == "none" and (lr, seed) in blown
        k = s[task]["lrs"][m].index(lr)
        spiking = m == "lstm" and clip == "clip" and seed < 2 and k <= seed  # seed 0: 1 run, seed 1: 2 runs
        runs[f"{task}|{m}|{clip}|{lr}|{seed}"] = {
            "diverged": div,
            "diverged_strict": div,
            "nonfinite": False,
            "initial_val_loss": 2.0,
            "final_val_loss": 3.0 if div else 1.0 + 0.01 * seed,
            "test_loss": 1.0 + 0.01 * seed + (0.1 if clip == "none" else 0.0),
            "test_error": 0.5,
            "spikes": k + seed if clip == "clip" else 0,
            "jacobian_init": [1.0, 2.0 + 0.1 * seed],
            "jacobian_final": [0.0, (1.0 if clip == "clip" else -1.0) + 0.1 * seed + 0.2 * k],
            "gates": {
                "spike_steps": 3,
                "quiet_steps": 100,
                "share_spike": {**shares, "c": 0.5 + 0.1 * k + 0.01 * seed},
                "share_quiet": shares,
                "growth": {g: 10.0 for g in E.GATES},
            }
            if spiking
            else None,
            "layers": None,
            "recurrent_layer": "rnn",
        }
    return {
        "settings": s,
        "runs": runs,
        "chance": {"temporal_order": math.log(E.CLASSES), "text": 3.3},
        "default_lstm_jacobian": {t: [[0.0, -5.0 - 0.1 * sd] for sd in range(seeds)] for t in E.TASKS},
    }


def test_clipped_and_unclipped_are_compared_seed_by_seed():
    an = E.analyse(_stand_in_results())
    text = an["tasks"]["text"]["simple_rnn"]
    # At each rate the 5 seeds pair the arms: 4/5 vs 0/5 at lr 3 is McNemar's binomtest(4, 4), not Fisher's 0.048.
    d = text["divergence"]["3.0"]
    assert (d["test"], d["seeds"], d["b_count"], d["a_count"], d["b_more"]) == ("McNemar exact", 5, 4, 0, 4)
    assert d["p"] == pytest.approx(0.125) and d["verdict"] == "inconclusive"
    # Over the rates the seed stays the unit: 5/15 runs but 4 seeds diverged, so the sign test gives 0.125
    # (Fisher on 0/15 vs 5/15 said 0.042, "supported").
    pooled = text["pooled"]
    assert (pooled["test"], pooled["seeds"], pooled["b_count"], pooled["b_n"]) == ("sign test over seeds", 5, 5, 15)
    assert pooled["p"] == pytest.approx(0.125) and pooled["verdict"] == "inconclusive"
    assert "at least 6 discordant seeds" in E._counts_sentence(pooled)


def test_runs_at_several_rates_are_averaged_per_seed():
    results = _stand_in_results()
    an = E.analyse(results)
    for task in E.TASKS:
        for m in E.MODELS:
            e = an["tasks"][task][m]
            lrs = results["settings"][task]["lrs"][m]
            # H4: one value per seed, the seed's mean spike count over its rates (k + seed over k = 0, 1, 2).
            assert e["spikes"]["a_values"] == pytest.approx([1.0 + seed for seed in range(5)])
            assert e["spikes"]["b_values"] == [0.0] * 5
            assert len(lrs) == 3 and len(e["jacobian_clip_vs_none"]["a_values"]) == 5
            assert e["jacobian_clip_vs_none"]["a_values"][0] == pytest.approx(1.0 + 0.2)  # mean over k of 0.2 k
    # H6: the LSTM runs with spikes are seed 0's one run and seed 1's two; the test pairs 2 seeds, not 3 runs.
    gates = an["gates"]["text"]
    assert (gates["runs"], gates["seeds"]) == (3, 2)
    assert gates["gates"]["c"]["test"]["a_values"] == pytest.approx([0.5, 0.5 + 0.05 + 0.01])
