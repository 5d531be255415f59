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
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(COLUMNS="80"),
    )


def test_a_quick_run_prints_no_native_logging(quick_run):
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    chatter = [line for line in quick_run.stderr.splitlines() if NATIVE_CHATTER.search(line)]
    assert not chatter, "\n".join(chatter)
