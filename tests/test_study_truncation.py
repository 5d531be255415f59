"""The truncation study: its committed report is its raw results rendered, a quick run renders the
same way, and its data generator, metrics, update counts and solved criterion do what they say."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from studies import cli
from studies import truncation as tr

COMMITTED = Path(tr.__file__).resolve().parent / "results" / "truncation"


def _check_report(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert tr.render(results) == report
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).stat().st_size > 10_000, f"plot {image} missing or empty"
    assert (out / "results.csv").read_text().count("\n") == len(results["rows"]) + 1
    return results


def test_committed_report_is_its_results_rendered():
    if not (COMMITTED / "results.json").exists():
        pytest.skip("no committed full run of the truncation study yet (studies/results/truncation/results.json)")
    results = _check_report(COMMITTED)
    assert not results["quick"]
    assert len(results["seeds"]) >= 5
    # Every arm of the comparison has one run per seed at its chosen learning rate.
    for part in tr.PARTS:
        for arm in tr.ARMS:
            assert len(tr._vals(results, part, arm, "test_loss")) == len(results["seeds"])
    # Equal tokens: every run of a part saw the same number of tokens.
    for part in tr.PARTS:
        assert len({r["tokens"] for r in results["rows"] if r["part"] == part}) == 1
    # The report references only PNGs that exist, and no stale ones are left beside it.
    report = (COMMITTED / "report.md").read_text()
    referenced = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report))
    assert {p.name for p in COMMITTED.glob("*.png")} == referenced


@pytest.mark.slow
def test_quick_run_report_comes_from_its_results(tmp_path):
    out = tmp_path / "truncation"
    assert cli.main(["truncation", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    results = _check_report(out)
    assert results["quick"]
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == len(results["rows"]) == 2 * len(tr.ARMS) * 2  # parts x arms x seeds (one learning rate)
    # The optimizer made exactly the updates the schedule plans: one per chunk of K steps.
    for run in results["runs"].values():
        assert run["updates"] == run["planned_updates"]
    # A second run resumes from runs.jsonl: nothing is trained again and the numbers are the same.
    assert cli.main(["truncation", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    assert (out / "runs.jsonl").read_text().splitlines() == lines
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]


def test_delay_stream_targets_are_the_input_lag_steps_back():
    x, y, w = tr.delay_stream(np.random.default_rng(0), streams=3, steps=50, lag=8)
    assert x.shape == y.shape == w.shape == (3, 50)
    assert set(np.unique(x)) <= {0, 1}
    np.testing.assert_array_equal(y[:, 8:], x[:, :-8])
    assert (w[:, :8] == 0).all() and (w[:, 8:] == 1).all()
    # The same seed gives the same bits: arms paired by seed train on the same data.
    np.testing.assert_array_equal(x, tr.delay_stream(np.random.default_rng(0), 3, 50, 8)[0])


def test_windows_continue_each_stream_from_batch_to_batch():
    a = np.arange(2 * 10).reshape(2, 10)
    (w,) = tr.windows((a,), seq_len=4)
    assert w.shape == (2, 2, 4)  # (batches, streams, seq_len); the 2 leftover steps are dropped
    np.testing.assert_array_equal(np.concatenate([w[0], w[1]], axis=1), a[:, :8])


def test_masked_metrics_count_only_weighted_steps():
    y = np.array([[0, 1, 1, 0]])
    logits = np.zeros((1, 4, 2))
    logits[0, :, 1] = [5.0, 5.0, 5.0, -5.0]  # right on steps 1-3, wrong on step 0
    w = np.array([[0.0, 1.0, 1.0, 1.0]])
    m = tr.masked_metrics(logits, y, w)
    assert m["acc"] == 1.0
    assert m["loss"] == pytest.approx(np.log1p(np.exp(-5.0)))
    assert tr.masked_metrics(logits, y)["acc"] == 0.75
    uniform = tr.masked_metrics(np.zeros((1, 4, 2)), y)
    assert uniform["loss"] == pytest.approx(np.log(2.0))


def test_solved_criterion_and_area_under_the_curve():
    assert tr.solved(0.995) and tr.solved(tr.SOLVED)
    assert not tr.solved(0.98) and not tr.solved(float("nan"))
    assert tr.auc([3.0, 2.0, 1.0]) == 2.0


def test_updates_per_window_and_curriculum_schedule():
    assert tr.updates_per_window(128, 1) == 128
    assert tr.updates_per_window(128, 16) == 8
    assert tr.updates_per_window(128, 48) == 3  # chunks of 48, 48, 32
    assert tr.updates_per_window(128, None) == tr.updates_per_window(128, 256) == 1
    assert tr.curriculum(16) == "1:2,4:2,16:4,full"
    assert tr.curriculum(4) == "1:1,4:1,16:1,full"
    with pytest.raises(ValueError):
        tr.curriculum(3)
    # 2 epochs of K=1, 2 of K=4, 4 of K=16, then full BPTT; 10 windows of 128 steps per epoch.
    planned = tr.planned_updates("1:2,4:2,16:4,full", 128, 10, 9)
    assert np.diff([0, *planned]).tolist() == [1280, 1280, 320, 320, 80, 80, 80, 80, 10]


def test_plateau_measures_the_last_quarter():
    p = tr.plateau([4.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.02, 2.0])
    assert (p["from_epoch"], p["to_epoch"]) == (6, 8)
    assert p["drop"] == pytest.approx(0.05)


def _stand_in_run(tmp_path, monkeypatch, short_spread: float = 0.002):
    """tr.run with training replaced by made-up numbers: K <= L arms score 0.5 + short_spread x noise on
    the delay task, every other arm 0.999. Returns the results and the list of training calls."""
    import argparse

    calls = []

    def fake_train(part, p, data, schedule, lr, seed):
        calls.append((part, schedule, lr, seed))
        arm = next(a for a, sch in p["schedules"].items() if sch == schedule)
        short = arm in ("K=1", "K=4")
        rng = np.random.default_rng(seed)
        # The stand-in prefers the larger rate for every arm but K=1.
        base = 1.0 + (0.1 if (lr == max(p["learning_rates"][arm])) == (arm == "K=1") else 0.0)
        val = [base + 1.0 / (e + 1) + 0.01 * rng.random() for e in range(p["epochs"])]
        acc = 0.5 + short_spread * rng.standard_normal() if (part == "delay" and short) else 0.999
        tokens = [(e + 1) * 1000 for e in range(p["epochs"])]
        return {
            "tokens": tokens,
            "updates": tokens,
            "seconds": tokens,
            "cpu_seconds": tokens,
            "val_loss": val,
            "val_acc": [acc] * p["epochs"],
            "train_loss": val,
            "planned_updates": tokens,
            "test_loss": val[-1] if part == "text" else (0.69 if short else 0.01),
            "test_acc": acc,
            "diverged": None,
        }

    def fake_text_data(t):
        return {
            "train": None,
            "windows": 1,
            "val": None,
            "test": None,
            "vocab_size": 3,
            "meta": {"unigram_test_loss": 3.3},
        }

    monkeypatch.setattr(tr, "_train", fake_train)
    monkeypatch.setattr(tr, "_text_data", fake_text_data)
    args = argparse.Namespace(quick=False, seeds=5, text_file=None, name="truncation")
    results = tr.run(args, tmp_path)
    results["quick"] = False
    return results, calls, args


def test_full_settings_orchestration_with_stand_in_training(tmp_path, monkeypatch):
    """The full run's bookkeeping without training: every arm sweeps its rates on seed 0, the lowest final
    validation loss wins, seeds 1.. reuse it, and the report's verdicts follow the stand-in numbers."""
    results, calls, args = _stand_in_run(tmp_path, monkeypatch)
    s = results["settings"]
    assert len(calls) == sum(len(s[p]["learning_rates"][a]) + 4 for p in tr.PARTS for a in tr.ARMS)
    for part in tr.PARTS:
        for arm in tr.ARMS:
            lrs = s[part]["learning_rates"][arm]
            assert results["chosen_lr"][part][arm] == (min(lrs) if arm == "K=1" else max(lrs))
            assert len(tr._vals(results, part, arm, "test_loss")) == 5
    report = tr.render(json.loads(json.dumps(results)))
    assert "Hypothesis 1, K <= L at chance: an equivalence claim" in report
    assert f"inside 0.5 ± {tr.CHANCE_MARGIN:g}" in report
    # Seeds pair the arms: 5/5 vs 0/5 solved is McNemar's 2 / 2**5, short of 0.05 with 5 seeds.
    assert "K=16 learns the lag, K=4 does not: K=16 solved 5/5" in report
    assert "McNemar exact p = 0.062: **inconclusive**" in report and "Fisher" not in report
    assert "**supported**" in report
    # Resuming reads every run back from runs.jsonl instead of training again.
    calls.clear()
    assert tr.run(args, tmp_path)["rows"] == results["rows"]
    assert calls == []


def test_k_at_most_l_at_chance_needs_an_interval_inside_the_margin(tmp_path, monkeypatch):
    """Accuracies spread around 0.5 are not significantly above chance, but their 95% CI is too wide to show
    they are at chance: the verdict is inconclusive, not supported."""
    results, _, _ = _stand_in_run(tmp_path, monkeypatch, short_spread=0.05)
    an = tr.analyse(results)
    assert an["delay"]["at_chance"]["K=4"]  # the one-sided test does not reject chance...
    eq = an["delay"]["chance_equivalence"]
    assert eq["margin"] == tr.CHANCE_MARGIN
    assert eq["arms"]["K=4"]["high"] - eq["arms"]["K=4"]["low"] > 2 * tr.CHANCE_MARGIN
    assert eq["verdict"] == "inconclusive"  # ...which is no evidence that it is at chance
    report = tr.render(json.loads(json.dumps(results)))
    assert "K <= L is not shown to be at chance" in report
