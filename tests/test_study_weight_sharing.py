"""The weight-sharing study: its data, metrics and selection rules, and reports that come from their results."""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from studies import cli
from studies import weight_sharing as ws

COMMITTED = Path(ws.__file__).resolve().parent / "results" / "weight_sharing"


def _check_report_matches_raw(out: Path) -> dict:
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    # The report is exactly what the raw numbers render to: nothing in it was written in advance.
    assert ws.render(results) == report
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).stat().st_size > 10_000, f"plot {image} missing or empty"
    assert (out / "results.csv").read_text().count("\n") == len(results["rows"]) + 1
    return results


def test_committed_report_is_rendered_from_committed_results():
    if not (COMMITTED / "results.json").exists():
        pytest.skip("no committed full run of weight_sharing yet (studies/results/weight_sharing/results.json)")
    results = _check_report_matches_raw(COMMITTED)
    assert not results["quick"]
    # The committed comparison is paired over at least 5 seeds in every arm.
    assert results["seeds"] >= 5
    # Every finished run is in the resumable store.
    assert (COMMITTED / "runs.jsonl").read_text().count("\n") >= len(results["runs"])


@pytest.mark.slow
def test_quick_run_report_comes_from_its_results(tmp_path):
    out = tmp_path / "ws"
    assert cli.main(["weight_sharing", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    results = _check_report_matches_raw(out)
    assert {r["key"]["seed"] for r in results["runs"]} == {0, 1}
    # A second start finds every run in runs.jsonl and trains nothing: the numbers are identical.
    first = (out / "results.json").read_text()
    assert cli.main(["weight_sharing", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == json.loads(first)["runs"]


def test_marker_data_labels_the_marked_value():
    x, y, pos = ws.marker_data(500, 12, range(3, 6), np.random.default_rng(0))
    assert x.shape == (500, 12, 2) and x.dtype == np.float32
    assert np.all(x[..., 1].sum(axis=1) == 1)  # exactly one marker per sequence
    assert np.array_equal(x[..., 1].argmax(axis=1), pos)
    assert set(pos) <= {3, 4, 5}
    assert np.array_equal(y, (x[np.arange(500), pos, 0] > 0).astype("float32"))
    assert 0.4 < y.mean() < 0.6  # balanced classes: chance is 0.5


def test_data_sets_are_the_same_for_every_arm_and_every_restart():
    a = ws.marker_data(64, 10, range(10), ws._rng(3, 5))
    b = ws.marker_data(64, 10, range(10), ws._rng(3, 5))
    c = ws.marker_data(64, 10, range(10), ws._rng(4, 5))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "bits, label",
    [([0, 0, 1, 1, 1, 0], 0), ([0, 1, 0, 1, 0, 0, 1], 1), ([1], 0), ([0, 1], 1), ([1, 1, 1], 0), ([1, 0, 0, 1], 0)],
)
def test_even_pairs_label(bits, label):
    # Deletang et al.'s examples (001110 -> class 0, 0101001 -> class 1) and edge cases: the count of
    # 01 and 10 pairs is odd exactly when the first and last bit differ.
    assert ws.even_pairs_label(bits) == label
    assert label == int(bits[0] != bits[-1])


def test_even_pairs_data_pads_on_the_left_and_labels_only_the_real_steps():
    x, y, lengths = ws.even_pairs_data(300, range(1, 9), 8, np.random.default_rng(1))
    assert x.shape == (300, 8, 2)
    for row, label, n in zip(x, y, lengths, strict=True):
        real = row.sum(axis=1) == 1
        assert real.sum() == n and np.all(real[8 - n :]) and not np.any(row[: 8 - n])
        assert label == ws.even_pairs_label(row[8 - n :].argmax(axis=1))
    with pytest.raises(ValueError, match="pad_to"):
        ws.even_pairs_data(4, [9], 8, np.random.default_rng(0))


def test_position_accuracy_and_solved():
    correct = np.array([1, 0, 1, 1, 0, 0], bool)
    pos = np.array([0, 0, 1, 1, 2, 2])
    acc = ws.position_accuracy(correct, pos, 4)
    assert acc[:3] == [0.5, 1.0, 0.0] and np.isnan(acc[3])
    assert ws.solved(0.95) and ws.solved(1.0) and not ws.solved(0.949)


def _args(**kw):
    base = dict(quick=False, timesteps=None, units=None, sizes=None, lrs=None, updates=None, seeds=5)
    return argparse.Namespace(**{**base, **kw})


def test_settings_defaults_and_checks():
    s = ws._settings(_args())
    assert s["sizes"] == [64, 256, 1024, 4096] and s["n_position"] == 4096
    assert s["T"] == 20 and s["length_factors"] == [1, 2, 4] and len(s["lrs"]) >= 2
    assert s["updates"] % s["evals"] == 0
    assert min(s["even_pairs"]["test_lengths"]) > s["even_pairs"]["train_max"]
    assert ws._settings(_args(quick=True, sizes="32,8"))["sizes"] == [8, 32]
    with pytest.raises(ValueError, match="timesteps"):
        ws._settings(_args(timesteps=7))


def _run(part, arm, seed, lr, val, **result):
    key = {"part": part, "arm": arm, "seed": seed, "lr": lr, "n_train": 100}
    return {"key": key, "result": {"val_best": val, "diverged": False, **result}}


def test_learning_rate_is_chosen_on_validation_never_on_test():
    runs = []
    for seed in range(3):
        # lr 0.1 has the better test accuracy, lr 0.01 the better validation accuracy: 0.01 must win.
        runs.append(_run("b", "shared", seed, 0.1, 0.70, test_acc=0.99))
        runs.append(_run("b", "shared", seed, 0.01, 0.80, test_acc=0.60 + seed / 100))
    choices, chosen = ws._select({"runs": runs})
    assert [(c["part"], c["arm"], c["n_train"], c["lr"]) for c in choices] == [("b", "shared", 100, 0.01)]
    assert choices[0]["val_by_lr"] == {0.1: pytest.approx(0.70), 0.01: pytest.approx(0.80)}
    assert ws._vals(chosen, "b", "shared", 100, "test_acc") == [0.60, 0.61, 0.62]


def test_solved_counts_are_compared_seed_by_seed():
    runs = []
    for seed in (3, 0, 2, 1, 4):  # stored out of order: the test must pair by seed, not by position
        runs.append(_run("b", "shared", seed, 0.01, 0.9, test_acc=0.99))
        runs.append(_run("b", "unshared", seed, 0.01, 0.6, test_acc=0.99 if seed == 2 else 0.60))
    _, chosen = ws._select({"runs": runs})
    c = ws._count(chosen, "b", 100, "test_acc", "solved")
    assert (c["test"], c["seeds"], c["a_count"], c["b_count"], c["a_more"], c["b_more"]) == (
        "McNemar exact",
        5,
        5,
        1,
        4,
        0,
    )
    assert c["p"] == pytest.approx(0.125) and c["verdict"] == "inconclusive"  # Fisher on 5/5 vs 1/5: 0.048
    with pytest.raises(ValueError, match="same seeds"):
        ws._count(ws._select({"runs": runs[:-1]})[1], "b", 100, "test_acc", "solved")


def test_committed_report_states_the_h3a_margin():
    if not (COMMITTED / "report.md").exists():
        pytest.skip("no committed full run of weight_sharing yet")
    report = (COMMITTED / "report.md").read_text()
    assert f"below chance + {ws.H3A_MARGIN:g} = {ws.CHANCE + ws.H3A_MARGIN:g} (a margin we set" in report
    assert "Fisher" not in report


def test_both_arms_at_chance_is_a_negative_control():
    kw = dict(a="shared", b="unshared", metric="accuracy", higher_is_better=True)
    control = ws._paired_or_control([0.50, 0.49, 0.51, 0.50, 0.52], [0.48, 0.50, 0.49, 0.51, 0.50], **kw)
    assert control["verdict"] == "negative control"
    real = ws._paired_or_control([0.95, 0.97, 0.96, 0.98, 0.94], [0.50, 0.52, 0.49, 0.51, 0.50], **kw)
    assert real["verdict"] == "supported" and real["b_at_chance"] and not real["a_at_chance"]
    assert real["ci_low"] > 0.4


def test_unshared_model_refuses_longer_sequences():
    import zoo

    message = ws._unshared_long_input_error(zoo.ModelConfig("unshared_rnn", cell="lstm", units=4), 6)
    assert "UnsharedRNN has weights for exactly 6 timesteps" in message
    assert "\x1b" not in message
