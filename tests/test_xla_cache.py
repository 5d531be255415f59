"""The on-disk cache of XLA's compiled programs: off unless asked for, where it goes, how it is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import xla_cache

REPO = Path(__file__).resolve().parents[1]

# A command's start (quiet_tensorflow), then one XLA-compiled function; prints TF_XLA_FLAGS.
PROBE = (
    "import os; from tasks.terminal import quiet_tensorflow; quiet_tensorflow(); import tensorflow as tf; "
    "f = tf.function(lambda x: tf.tanh(x) * 2.0, jit_compile=True); f(tf.ones(3)).numpy(); "
    "print(os.environ.get('TF_XLA_FLAGS', ''))"
)


@pytest.mark.slow  # a TensorFlow process of its own; the cache is opt-in
def test_a_command_asked_to_keeps_its_compiled_programs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, xla_cache.CACHE_ENV: str(tmp_path / "xla")},
    )
    assert out.returncode == 0, out.stderr
    (folder,) = (tmp_path / "xla").iterdir()  # one subfolder: this TensorFlow on this machine
    assert f"{xla_cache.FLAG}={folder}" in out.stdout
    assert any(p.suffix == ".pb" for p in folder.iterdir())  # the compiled function, for the next command


def test_off_unless_asked_and_a_users_own_flags_win(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as before a command imports it
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.delenv(xla_cache.CACHE_ENV, raising=False)
    assert xla_cache.enable() is None and "TF_XLA_FLAGS" not in os.environ
    monkeypatch.setenv(xla_cache.CACHE_ENV, "0")
    assert xla_cache.enable() is None
    own = f"{xla_cache.FLAG}={tmp_path / 'mine'}"
    monkeypatch.setenv("TF_XLA_FLAGS", own)
    monkeypatch.setenv(xla_cache.CACHE_ENV, str(tmp_path / "ours"))
    assert xla_cache.enable() is None and os.environ["TF_XLA_FLAGS"] == own and not (tmp_path / "ours").exists()


def test_a_folder_it_cannot_use_leaves_the_cache_off_with_a_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.setenv(xla_cache.CACHE_ENV, str(tmp_path / "with space"))
    assert xla_cache.enable() is None and "TF_XLA_FLAGS" not in os.environ
    assert "whitespace" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(xla_cache.CACHE_ENV, str(tmp_path / "file" / "below"))  # below a file: cannot be made
    assert xla_cache.enable() is None and "XLA cache stays off" in capsys.readouterr().err


def test_default_folder_and_trim_keeps_the_newest_and_the_young(tmp_path, monkeypatch):
    monkeypatch.setenv(xla_cache.CACHE_ENV, "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert xla_cache.cache_dir().parent == tmp_path / "cache" / "seqzoo" / "xla"
    now = time.time()
    for age, name in [(7200, "new"), (7300, "middle"), (7400, "old"), (10, "young_but_over")]:
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age, now - age))
    xla_cache.trim(tmp_path, limit=250)  # the two newest fit
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["new", "young_but_over"]
    xla_cache.trim(tmp_path, limit=50)  # none fits, but a file written in the last hour is never deleted
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["young_but_over"]
    xla_cache.trim(tmp_path, limit=50, keep_seconds=0)
    assert not any(p.is_file() for p in tmp_path.iterdir())
