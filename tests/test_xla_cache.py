"""The on-disk cache of XLA's compiled programs: where it goes, how it is bounded, how it is turned off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tasks import xla_cache

REPO = Path(__file__).resolve().parents[1]

# A command's start (quiet_tensorflow), then one XLA-compiled function; prints TF_XLA_FLAGS.
PROBE = (
    "import os; from tasks.terminal import quiet_tensorflow; quiet_tensorflow(); import tensorflow as tf; "
    "f = tf.function(lambda x: tf.tanh(x) * 2.0, jit_compile=True); f(tf.ones(3)).numpy(); "
    "print(os.environ.get('TF_XLA_FLAGS', ''))"
)


def _probe(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", xla_cache.CACHE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, env={**base, **env}
    )


def test_a_command_keeps_its_compiled_programs_in_the_cache_folder(tmp_path):
    folder = tmp_path / "xla"
    out = _probe(SEQZOO_XLA_CACHE=str(folder))
    assert out.returncode == 0, out.stderr
    assert f"{xla_cache.FLAG}={folder}" in out.stdout
    assert any(p.suffix == ".pb" for p in folder.iterdir())  # the compiled function, for the next command


def test_the_cache_can_be_turned_off_and_a_users_own_flags_win(tmp_path):
    off = _probe(SEQZOO_XLA_CACHE="0")
    assert off.returncode == 0 and xla_cache.FLAG not in off.stdout
    own = f"{xla_cache.FLAG}={tmp_path / 'mine'}"
    mine = _probe(SEQZOO_XLA_CACHE=str(tmp_path / "ours"), TF_XLA_FLAGS=own)
    assert mine.returncode == 0 and mine.stdout.strip() == own
    assert not (tmp_path / "ours").exists()


def test_default_folder_and_trim_keeps_the_newest(tmp_path, monkeypatch):
    monkeypatch.delenv(xla_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert xla_cache.cache_dir() == tmp_path / "cache" / "seqzoo" / "xla"
    for age, name in enumerate(["new", "middle", "old"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    xla_cache.trim(tmp_path, limit=250)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["middle", "new"]
