"""The gating study: its data generators, solved criteria, chrono initialization, statistics and report."""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from studies import cli
from studies import gating as G

RESULTS = Path(G.__file__).resolve().parent / "results" / "gating"


def test_committed_report_is_rendered_from_committed_results():
    if not (RESULTS / "results.json").exists():
        pytest.skip("no committed full run of the gating study yet (studies/results/gating/results.json)")
    results = json.loads((RESULTS / "results.json").read_text())
    assert G.render(results) == (RESULTS / "report.md").read_text()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (RESULTS / "report.md").read_text()):
        assert (RESULTS / image).exists(), f"the report shows {image}, which is not committed"


@pytest.mark.slow
def test_quick_run_report_comes_from_its_results(tmp_path):
    out = tmp_path / "gating"
    assert cli.main(["gating", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert G.render(results) == (out / "report.md").read_text()
    assert len(results["rows"]) == 2 * len(G.ARMS) * 2  # settings x arms x seeds
    assert (out / "runs.jsonl").read_text().count("\n") == 2 * len(G.ARMS) * 3  # 2 rates on seed 0, seed 1
    # A second invocation trains nothing: every run comes back from runs.jsonl.
    assert cli.main(["gating", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["rows"] == results["rows"]


def test_adding_data_follows_hs97_layout():
    T, n = 100, 500
    x, y = G.adding_data(n, T, np.random.default_rng(0))
    width = T + T // 10
    assert x.shape == (n, width, 2) and y.shape == (n,)
    markers = x[..., 1]
    for i in range(n):
        minus = np.flatnonzero(markers[i] == -1)
        plus = np.flatnonzero(markers[i] == 1)
        start, end = minus
        assert end == width - 1 and T <= end - start + 1 <= width  # random length T .. T + T/10
        assert np.all(x[i, :start] == 0)  # front padding
        assert len(plus) == 2
        offsets = plus - start
        assert min(offsets) >= 1 and min(offsets) <= 10  # one of the first ten pairs
        assert max(offsets) <= T // 2 - 1  # within the first T/2 - 1 pairs...
        assert end - max(plus) >= T // 2  # ...so the minimal lag is T/2
        assert np.isclose(y[i], x[i, plus, 0].sum())
    assert np.all((x[..., 0] >= 0) & (x[..., 0] < 1))
    # Sum of two U(0, 1): predicting the mean 1 scores an MSE of 1/6.
    assert abs(np.mean((y - 1.0) ** 2) - G.PUBLISHED["mean_mse"]) < 0.03


def test_hs97_scaling_conversion():
    """HS97: values X in U(-1, 1), target 0.5 + (X1 + X2)/4, tolerance 0.04. Ours: u = (X + 1)/2 in
    U(0, 1), target u1 + u2 = 2 x theirs, so their tolerance is 0.08 here."""
    rng = np.random.default_rng(1)
    x1, x2 = rng.uniform(-1, 1, 1000), rng.uniform(-1, 1, 1000)
    theirs = 0.5 + (x1 + x2) / 4
    ours = (x1 + 1) / 2 + (x2 + 1) / 2
    assert np.allclose(ours, G.HS97_TO_OURS * theirs)
    s = G._settings(
        argparse.Namespace(
            quick=True, seeds=2, adding_lengths=None, recall_lags=None, sequences=None, batch=16, lrs=None
        )
    )
    assert s["tolerance"] == pytest.approx(0.08)
    y = np.array([1.0, 1.0, 1.0, 1.0])
    assert G.hs97_right(y + np.array([0.0, 0.079, -0.079, 0.081]), y, s["tolerance"]) == 0.75


def test_solved_criteria():
    s = {"mse_solved": 0.01, "hs97_right_solved": 0.99, "recall_solved": 0.99}
    assert G.adding_solved(0.01, 0.99, s) == (True, True)
    assert G.adding_solved(0.0101, 1.0, s) == (False, True)
    assert G.adding_solved(0.001, 0.98, s) == (True, False)
    assert G.adding_solved(float("nan"), float("nan"), s) == (False, False)  # diverged
    assert G.recall_solved(0.99, s) and not G.recall_solved(0.989, s)
    assert not G.recall_solved(float("nan"), s)


def test_recall_data_label_is_the_first_symbol():
    x, y = G.recall_data(300, 50, np.random.default_rng(2))
    assert x.shape == (300, 51, 2 * G.SYMBOLS)
    tokens = x.argmax(-1)
    assert np.array_equal(tokens[:, 0], y)
    assert np.all(tokens[:, 1:] >= G.SYMBOLS)  # distractors never repeat a recall symbol
    assert set(np.unique(y)) == set(range(G.SYMBOLS))


def test_chrono_biases():
    units, t_max = 8, 100
    rng = np.random.default_rng(3)
    lstm = [rng.normal(size=(2, 4 * units)), rng.normal(size=(units, 4 * units)), np.zeros(4 * units)]
    w = G.chrono_biases("lstm", lstm, t_max, np.random.default_rng(4))
    forget, inputs = w[2][units : 2 * units], w[2][:units]
    assert np.all((forget >= 0) & (forget <= np.log(t_max - 1)))
    assert np.allclose(inputs, -forget)
    assert np.all(w[2][2 * units :] == 0) and np.array_equal(w[0], lstm[0]) and np.array_equal(w[1], lstm[1])
    gru = [rng.normal(size=(2, 3 * units)), rng.normal(size=(units, 3 * units)), np.ones((2, 3 * units))]
    w = G.chrono_biases("gru", gru, t_max, np.random.default_rng(4))
    assert np.allclose(w[2][0, :units], forget)  # the same draw: the update gate holds the state
    assert np.all(w[2][1, :units] == 0) and np.all(w[2][:, units:] == 1)
    with pytest.raises(ValueError, match="chrono"):
        G.chrono_biases("simple", lstm, t_max, rng)


def test_solved_count_gap():
    # Paired by seed, McNemar's exact test needs 6 discordant seeds: 5/5 vs 0/5 gives p = 0.0625.
    assert G._min_gap(5) == 6  # never significant with 5 paired seeds
    assert G._min_gap(6) == 6
    assert G._min_gap(2) == 3


def _synthetic_results(seeds=5):
    """Results as run() would return them, with made-up runs: chrono arms solve, the rest do not."""
    s = G._settings(
        argparse.Namespace(
            quick=False, seeds=seeds, adding_lengths="100", recall_lags="100", sequences=None, batch=16, lrs=None
        )
    )
    rng = np.random.default_rng(5)
    rows, sweeps, curves = [], [], {}
    for task, length in G._settings_list(s):
        for arm in G.ARMS:
            good = arm.endswith("chrono")
            for lr in s["lrs"]:
                val = {"mse": 0.001, "right": 1.0} if task == "adding" else {"acc": 1.0, "loss": 0.01}
                sweeps.append(
                    {
                        "task": task,
                        "length": length,
                        "arm": arm,
                        "lr": lr,
                        "val": val,
                        "diverged": False,
                        "chosen": lr == s["lrs"][0],
                    }
                )
            for seed in s["seeds"]:
                if task == "adding":
                    mse = 0.001 * (1 + rng.random()) if good else 0.167 + 0.01 * rng.normal()
                    r = {"mse": mse, "right": 1.0 if good else 0.3}
                else:
                    r = {"acc": 1.0 if good else 0.25 + 0.01 * rng.normal(), "loss": 0.1}
                r.update({"params": 1000, "diverged": False, "curve": []})
                rows.append(G._row(s, task, length, arm, seed, s["lrs"][0], r))
                curves.setdefault(f"{task}:{length}", {}).setdefault(arm, []).append([])
    results = {
        "settings": s,
        "published": G.PUBLISHED,
        "sweeps": sweeps,
        "rows": rows,
        "curves": curves,
        "grads": {},
        "chance": {"adding_mse": 1 / 6, "recall_acc": 0.25},
        "pending": [],
        "stored_runs": len(rows),
    }
    results["analysis"] = G.analyse(results)
    return results


def test_verdicts_are_computed_from_the_runs():
    results = _synthetic_results()
    a = results["analysis"]["adding:100"]
    solved = G._find(a["counts"], "lstm_chrono", "simple_rnn", "solved_mse")
    # The seeds pair the arms: 5/5 vs 0/5 is 5 discordant seeds, McNemar exact p = 2 / 2**5, not Fisher's 0.0079.
    assert (solved["a_count"], solved["b_count"], solved["test"]) == (5, 0, "McNemar exact")
    assert solved["p"] == pytest.approx(0.0625) and solved["verdict"] == "inconclusive"
    six = G._find(
        _synthetic_results(seeds=6)["analysis"]["adding:100"]["counts"], "lstm_chrono", "simple_rnn", "solved_mse"
    )
    assert (six["a_count"], six["b_count"], six["verdict"]) == (6, 0, "supported")
    assert G._find(a["paired"], "lstm_chrono", "lstm")["verdict"] == "supported"
    assert a["arms"]["simple_rnn"]["at_chance"] and not a["arms"]["lstm_chrono"]["at_chance"]
    both = G._find(a["paired"], "lstm", "simple_rnn")
    assert both["both_at_chance"]
    report = G.render(results)
    assert report.splitlines()[2].startswith("**Why does an LSTM need its gates?**")
    assert "negative control" in report
    assert "gated arms that failed: adding problem (HS97), T = 100: lstm 0/5, gru 0/5" in report
    assert "74,000" in report  # the published figure beside ours
    assert "Fisher" not in report and "on solved runs: **inconclusive** (McNemar exact p = 0.062" in report
    assert "needs at least 6 discordant seeds" in report
    assert G.render(json.loads(json.dumps(results))) == report  # a pure function of the JSON


def test_unfinished_settings_are_left_out_and_said_so():
    results = _synthetic_results()
    results["rows"] = [r for r in results["rows"] if not (r["task"] == "recall" and r["seed"] == 4)]
    results["pending"] = ["recall 100 lstm seed 4"]
    results["analysis"] = G.analyse(results)
    assert list(results["analysis"]) == ["adding:100"]
    report = G.render(results)
    assert "**Incomplete run**" in report and "1 runs pending" in report


def test_bad_settings_are_refused():
    base = dict(quick=True, seeds=2, adding_lengths=None, recall_lags=None, sequences=None, batch=16, lrs=None)
    with pytest.raises(ValueError, match="--adding-lengths"):
        G._settings(argparse.Namespace(**{**base, "adding_lengths": "4"}))
    with pytest.raises(ValueError, match="--lrs"):
        G._settings(argparse.Namespace(**{**base, "lrs": "0"}))
    with pytest.raises(ValueError, match="--sequences"):
        G._settings(argparse.Namespace(**{**base, "sequences": 10}))
