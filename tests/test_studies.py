"""Every study runs in --quick mode and its report is derived from its raw results."""

import json
import re

import pytest

from studies import cli


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


def test_unknown_study_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
