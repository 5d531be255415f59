"""Every study runs in --quick mode and its report is derived from its raw results."""

import json
import re

import pytest

from studies import cli
from studies.common import verdict


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
@pytest.mark.parametrize("name", list(cli.STUDIES))
def test_study_quick_report_comes_from_its_results(name, tmp_path):
    out = _run(name, tmp_path)
    _check_report_matches_raw(name, out)


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
