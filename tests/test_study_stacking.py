"""The stacking study: its committed report, a quick run, and its selection rules and criteria."""

from __future__ import annotations

import json
import math

import pytest

from studies import stacking, stats
from studies.common import RESULTS_ROOT

COMMITTED = RESULTS_ROOT / "stacking"


def test_committed_report_is_rendered_from_committed_results():
    if not (COMMITTED / "results.json").exists():
        pytest.skip("no committed full run of the stacking study yet (studies/results/stacking/results.json)")
    results = json.loads((COMMITTED / "results.json").read_text())
    assert results["settings"]["version"] == stacking.VERSION
    assert (COMMITTED / "report.md").read_text() == stacking.render(results)
    for line in (COMMITTED / "report.md").read_text().splitlines():
        if line.startswith("![") and "](" in line:
            assert (COMMITTED / line.split("](")[1].rstrip(")")).exists(), line


def test_committed_run_has_five_paired_seeds_per_arm():
    if not (COMMITTED / "results.json").exists():
        pytest.skip("no committed full run of the stacking study yet")
    results = json.loads((COMMITTED / "results.json").read_text())
    for task in stacking.TASKS:
        runs = results["tasks"][task]["runs"]
        seeds = {arm: sorted(r["seed"] for r in runs if r["arm"] == arm) for arm in {r["arm"] for r in runs}}
        assert len(seeds) == len(stacking.ARMS)
        assert all(s == list(range(5)) for s in seeds.values()), seeds


@pytest.mark.slow
def test_quick_run_report_is_rendered_from_its_results(tmp_path):
    from studies import cli

    assert cli.main(["stacking", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "report.md").read_text() == stacking.render(results)
    assert results["quick"] is True
    for name in ("stacking.png", "stacking_text_curves.png", "stacking_classify_curves.png", "runs.jsonl"):
        assert (tmp_path / name).exists(), name
    # Every arm swept every learning rate on seed 0 and ran both seeds at its chosen rate.
    for task in stacking.TASKS:
        tr = results["tasks"][task]
        assert set(tr["chosen_lr"]) == {a for a, *_ in stacking.ARMS}
        assert len(tr["runs"]) == 2 * len(stacking.ARMS)
    # A second call finds every run in runs.jsonl and trains nothing new.
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert cli.main(["stacking", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines


def test_equal_parameter_widths_match_the_one_layer_count():
    for base, features, outputs in ((64, 32, 66), (32, 1, 2)):
        target = stacking.model_params(1, base, features, outputs)
        for arm in stacking.arms(base, features, outputs):
            if arm["series"] == "equal params":
                assert abs(arm["params"] - target) / target < 0.07, arm  # integer widths of small models
                assert arm["units"] < base
                # the closest width: one unit more or less is no closer
                for u in (arm["units"] - 1, arm["units"] + 1):
                    other = stacking.model_params(arm["depth"], u, features, outputs)
                    assert abs(other - target) >= abs(arm["params"] - target)
            elif arm["series"] == "equal width":
                assert arm["units"] == base and arm["params"] > target


def test_model_params_counts_body_and_head():
    # One LSTM layer: 4 gates x (inputs + units + bias) x units; head: (units + 1) x outputs.
    assert stacking.model_params(1, 10, 3, 5) == 4 * (3 + 10 + 1) * 10 + 11 * 5
    assert stacking.model_params(2, 10, 3, 5) == 4 * (3 + 10 + 1) * 10 + 4 * (10 + 10 + 1) * 10 + 11 * 5


def test_choose_lr_takes_the_lowest_finite_validation_loss():
    assert stacking.choose_lr({0.003: 1.9, 0.01: 1.8}) == 0.01
    assert stacking.choose_lr({0.003: 1.8, 0.01: float("nan")}) == 0.003
    assert stacking.choose_lr({0.003: 1.8, 0.01: 1.8}) == 0.003  # a tie: the smaller rate
    assert stacking.choose_lr({0.003: float("nan"), 0.01: float("nan")}) == 0.003


def test_plateau_criterion():
    assert stacking.plateaued([3.0, 2.5, 2.2, 2.0, 1.995, 1.99, 1.988, 1.987])
    assert not stacking.plateaued([3.0, 2.5, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7])
    assert stacking.plateaued([1.0, 0.8, 0.7, 0.72, 0.75])  # rising validation loss: no further gain
    assert not stacking.plateaued([0.5, 0.6, 0.7, 0.8], lower_is_better=False)  # accuracy still rising
    assert not stacking.plateaued([2.0, 1.9, 1.8])  # too few evaluations to tell
    assert not stacking.plateaued([2.0, 1.9, math.nan, 1.8])


def test_text_split_is_tfds_tiny_shakespeare_split():
    # Tiny Shakespeare has 1,115,394 characters; TFDS trains on the first 1,003,854 and validates on the next
    # 55,770: the same text, contiguous pieces, so train and validation come from the same distribution.
    text = "".join(chr(ord("a") + i % 26) for i in range(1_115_394))
    train, val, test = stacking.text_splits(text)
    assert (len(train), len(val), len(test)) == (1_003_854, 55_770, 55_770)
    assert train + val + test == text


def test_pairs_with_an_arm_at_chance_compare_nothing():
    chance = 0.5
    task = {
        "info": {"majority_test_acc": chance},
        "arms": [{"arm": "d1", "label": "1 layer"}, {"arm": "d2_params", "label": "2 layers, equal params"}],
        "runs": [{"arm": "d1", "seed": s, "test_acc": 0.9 + 0.01 * s} for s in range(5)]
        + [{"arm": "d2_params", "seed": s, "test_acc": 0.5 + 0.01 * (s - 2)} for s in range(5)],
    }
    assert stacking.arms_at_chance(task, "classify") == ["2 layers, equal params"]
    (c,) = stacking.comparisons(task, "classify", "test_acc", True, "test accuracy")
    assert c.verdict == "contradicted"
    assert stacking.verdict_of(c, ["2 layers, equal params"]).startswith("no comparison")
    assert stacking.verdict_of(c, []) == "contradicted"
    assert isinstance(c, stats.Paired) and c.n == 5


def _task(chance_arm: str | None, text: bool) -> dict:
    """Five seeds of a 1-layer arm and a 2-layer arm; ``chance_arm`` scores at chance."""
    key = "test_loss" if text else "test_acc"
    good, chance = (2.0, 3.3) if text else (0.9, 0.5)
    runs = []
    for arm in ("d1", "d2_params"):
        for s in range(5):
            v = chance if arm == chance_arm else good
            runs.append({"arm": arm, "seed": s, key: v + 0.01 * ((s * 7 + len(arm)) % 5 - 2)})
    info = {"unigram_test_loss": 3.3} if text else {"majority_test_acc": 0.5}
    return {
        "info": info,
        "arms": [{"arm": "d1", "label": "1 layer"}, {"arm": "d2_params", "label": "2 layers, equal params"}],
        "runs": runs,
    }


def test_an_arm_at_chance_voids_only_its_own_tasks_comparisons():
    results = {"tasks": {"text": _task(None, text=True), "classify": _task("d2_params", text=False)}}
    text_cmp = stacking.comparisons(results["tasks"]["text"], "text", *stacking.PRIMARY["text"])
    cls_cmp = stacking.comparisons(results["tasks"]["classify"], "classify", *stacking.PRIMARY["classify"])
    assert stacking.arms_at_chance(results["tasks"]["classify"], "classify") == ["2 layers, equal params"]
    assert [c.verdict for c in text_cmp] == ["inconclusive"]
    # The same label is at chance on classify only: the text comparison stays in the inconclusive list.
    assert stacking.inconclusive_comparisons(results, {"text": text_cmp, "classify": cls_cmp}) == text_cmp


def test_divergence_is_compared_seed_by_seed():
    task = _task(None, text=True)
    for r in task["runs"]:
        r["diverged"] = r["arm"] == "d1" and r["seed"] < 5
    (c,) = stacking.divergence_tests(task)
    assert (c.test, c.seeds, c.a_count, c.b_count) == ("McNemar exact", 5, 0, 5)
    assert c.p == pytest.approx(0.0625) and c.verdict == "inconclusive"
