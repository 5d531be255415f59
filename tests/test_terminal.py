"""What a person sees in the terminal: help without TensorFlow, a run without TensorFlow's native
start-up logging, a progress line that fits the terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What TensorFlow's native libraries print before their logging is set up, and the usual suspects after.
NATIVE_CHATTER = re.compile(r"absl::InitializeLog|cudart_stub|cuInit|oneDNN|cpu_feature_guard|^[IWEF]\d{4} \d\d:\d\d:")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SEQZOO_TF_LOGS")}
    return {**env, **extra}


@pytest.mark.parametrize(
    "argv",
    [
        "--help",
        "train textgen --help",
        "train classify --help",
        "train movement --help",
        "tune --help",
        "tune textgen --help",
        "study --help",
    ],
)
def test_help_does_not_import_tensorflow(argv):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['seqzoo', *{argv.split()!r}]\n"
        "try:\n    runpy.run_module('tasks.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "usage:" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "False False", out.stderr[-2000:]


def test_native_log_lines_are_dropped_and_the_rest_is_kept():
    probe = (
        "import os\n"
        "from tasks.terminal import _native_stderr_filtered\n"
        "with _native_stderr_filtered():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796471398.028585   31462 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
        "    os.write(2, b'E0000 00:00:1796471407.286728   31462 cuda_platform.cc:52] failed call to cuInit\\n')\n"
        "    os.write(2, b'a line of our own\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "a line of our own\n"


def test_seqzoo_tf_logs_leaves_tensorflow_alone():
    probe = "import sys; from tasks.terminal import quiet_tensorflow; quiet_tensorflow(); print('tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(SEQZOO_TF_LOGS="1"),
    )
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``seqzoo train classify --quick`` as a person runs it, in a terminal 80 columns wide."""
    tmp = tmp_path_factory.mktemp("quick")
    argv = ["train", "classify", "--quick", "--runs", str(tmp / "runs"), "--saved-models", str(tmp / "saved")]
    run = subprocess.run(
        [sys.executable, "-m", "tasks.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(COLUMNS="80"),
    )
    run.runs = tmp / "runs"
    return run


def test_a_quick_run_prints_no_native_logging(quick_run):
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    chatter = [line for line in quick_run.stderr.splitlines() if NATIVE_CHATTER.search(line)]
    assert not chatter, "\n".join(chatter)
    # Nor Keras's warning that fit's shuffle=True is moot for a tf.data pipeline: nothing at all.
    assert quick_run.stderr == "", quick_run.stderr[-3000:]


def test_the_progress_line_fits_the_terminal_and_shows_loss_metric_norm_and_rate(quick_run):
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    lines = [part for line in quick_run.stdout.splitlines() for part in line.split("\r")]
    progress = [line for line in lines if re.match(r"\d+/\d+ ", line)]
    assert progress, quick_run.stdout[:2000]
    assert max(len(line) for line in progress) <= 80, progress
    for name in ("loss ", "acc ", "val_loss ", "gnorm ", "lr "):
        assert name in progress[-1], progress[-1]
    assert "grad_norm/" not in quick_run.stdout and "grad_norm_clipped" not in quick_run.stdout
    # Per-layer and per-gate norms go to grad_norms.csv (and TensorBoard), not to the epoch's history.
    (run_dir,) = quick_run.runs.glob("classify/*/*/")
    assert "grad_norm/" in (run_dir / "grad_norms.csv").read_text().splitlines()[0]
    assert "grad_norm/" not in (run_dir / "history.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("width", [200, 120, 80, 60, 40, 20])
def test_render_never_exceeds_the_width(width):
    from zoo.progress import render

    fields = [
        ("loss", 2.1695123, 0),
        ("balanced_accuracy", 0.18644, 2),
        ("accuracy", 0.5, 6),
        ("val_loss", float("nan"), 1),
        ("val_balanced_accuracy", 0.5556, 3),
        ("val_accuracy", 0.5, 7),
        ("grad_norm", 1234.5678, 4),
        ("learning_rate", 3e-5, 5),
    ]
    for step, steps, seconds in ((1, 12345, "ETA 1h02m"), (12345, 12345, "59m59s"), (7, None, "")):
        line = render(step, steps, seconds, fields, width)
        assert len(line) <= width - 1 and line.startswith(f"{step}"), line
    assert "bal_acc 0.186" in render(1, 10, "1s", fields, 200)
