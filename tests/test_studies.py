"""Every study runs in --quick mode and its report is derived from its raw results."""

import json
import re

import pytest

from studies import cli
from studies.common import mean_ci, verdict


def _run(name, tmp_path):
    out = tmp_path / name
    assert cli.main([name, "--quick", "--seeds", "2", "--out", str(out)]) == 0
    return out


def _check_report_matches_raw(name, out):
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    # The report is exactly what the raw numbers render to: nothing in it was written in advance.
    assert cli.load(name).render(results) == report
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).stat().st_size > 10_000, f"plot {image} missing or empty"
    assert (out / "results.csv").read_text().count("\n") == len(results["rows"]) + 1
    return report, results


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in cli.STUDIES if n != "weight_sharing"])
def test_study_quick_report_comes_from_its_results(name, tmp_path):
    out = _run(name, tmp_path)
    _check_report_matches_raw(name, out)


def test_weight_sharing_numbers(tmp_path):
    """The headline numbers in the weight-sharing report are the means of the raw per-seed rows."""
    out = _run("weight_sharing", tmp_path)
    report, results = _check_report_matches_raw("weight_sharing", out)
    rows = [r for r in results["rows"] if r["part"] == "a"]
    assert len(rows) == 4  # 2 models x 2 seeds
    for model in results["models"]:
        unseen = [r["acc_unseen_positions"] for r in rows if r["model"] == model]
        summary = mean_ci(unseen)
        assert f"{summary['mean']:.3f} ± {summary['ci95']:.3f}" in report
    # Parameter counts: shared is constant in T, unshared linear.
    shared, unshared = (results["params"][m] for m in results["models"])
    assert len(set(shared.values())) == 1
    assert unshared["200"] == 40 * unshared["5"]


def test_verdict_says_when_evidence_is_weak():
    assert "not significant" in verdict("a", [0.5, 0.6, 0.55], "b", [0.52, 0.58, 0.5])
    assert "beats b" in verdict("a", [0.9, 0.91, 0.92], "b", [0.5, 0.52, 0.49])
    assert "lower" not in verdict("a", [1.0, 1.1], "b", [2.0, 2.1], higher_is_better=False)
    assert verdict("a", [1.0, 1.1], "b", [2.0, 2.1], higher_is_better=False).startswith("a beats b")
    assert "no test" in verdict("a", [0.9], "b", [0.5])


def test_unknown_study_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
