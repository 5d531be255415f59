"""The scripts in examples/ run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_classify_from_python_trains_exports_and_serves_in_a_fresh_process(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "classify_from_python.py"), str(tmp_path), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test accuracy" in out.stdout and "served in a fresh process: predicted [" in out.stdout
    assert list((tmp_path / "saved_models" / "classify" / "gru").glob("1/saved_model.pb"))
