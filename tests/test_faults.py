"""Faults of the machine and the operator, made real: signals sent to real processes, two processes
on one run folder, read-only and full filesystems (a small tmpfs where this machine lets the tests
mount one; otherwise a file-size limit on the child process stands in for a full disk), and export
files that are damaged or foreign."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from zoo.errors import FileProblem

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
SEQZOO = [sys.executable, "-m", "tasks.cli"]

# A small deterministic run: shuffled data reshuffled every epoch, dropout, truncated BPTT (or a
# stream with carried state), 6 batches per epoch. It signals itself after batch BATCH of epoch EPOCH.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import keras, numpy as np, tensorflow as tf
    import zoo
    from zoo import training
    from zoo.preemption import TrainingInterrupted

    keras.utils.set_random_seed(7)
    run_dir, out = sys.argv[1], sys.argv[2]
    stream = bool(os.environ.get("STREAM"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (48, 10))
    ds = tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, 1)))
    ds = (ds if stream else ds.shuffle(48, seed=3)).batch(8)
    cfg = zoo.ModelConfig("gru", units=8, dropout=0.2, return_sequences=True)
    inputs = keras.Input((None,), dtype="int32")
    h = zoo.apply(cfg, keras.layers.Embedding(9, 4)(inputs))
    model = zoo.SeqModel(inputs, keras.layers.Dense(9)(h))
    training.compile_model(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Signal(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            at = os.environ.get("AT")
            if at and (self.epoch, batch) == tuple(map(int, at.split(","))):
                os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))

    try:
        training.fit(
            model, ds, epochs=4, bptt=5, stream=stream, run_dir=run_dir, callbacks=[Signal()], verbose=0,
            checkpoint_every=int(os.environ.get("EVERY", "0")),
        )
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_status)
    np.savez(out, *[v.numpy() for v in model.weights])
    """
)


def _start(tmp_path: Path, run_dir: str, out: str, **env) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / run_dir), str(tmp_path / out)],
        env={**ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _interrupt_and_resume(tmp_path, *, expect_status: int, expect_step: int, **env):
    straight = _start(tmp_path, "b", "b.npz", **{k: v for k, v in env.items() if k == "STREAM"})
    stopped = _start(tmp_path, "a", "a.npz", **env)
    _, err = stopped.communicate(timeout=180)
    assert stopped.returncode == expect_status, err[-2000:]
    assert not (tmp_path / "a.npz").exists()
    state = json.loads((tmp_path / "a" / "run.json").read_text())
    assert state["step"] == expect_step, state
    resumed = _start(tmp_path, "a", "a.npz", **{k: v for k, v in env.items() if k == "STREAM"})
    for proc in (resumed, straight):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert len(a.files) == len(b.files) > 0
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "a" / "grad_norms.csv"))]
    assert steps == list(range(1, 4 * 6 + 1))  # no step lost or logged twice
    epochs = [r["epoch"] for r in csv.DictReader(open(tmp_path / "a" / "history.csv"))]
    assert epochs == ["0", "1", "2", "3"]
    return err


def test_sigterm_mid_epoch_checkpoints_the_step_and_resumes_to_the_same_weights(tmp_path):
    # SIGTERM after batch 3 of epoch 2: global step 6 + 3 = 9.
    _interrupt_and_resume(tmp_path, expect_status=143, expect_step=9, SIGNAL="SIGTERM", AT="1,2")


@pytest.mark.slow
def test_ctrl_c_in_a_stream_keeps_the_carried_state(tmp_path):
    _interrupt_and_resume(tmp_path, expect_status=130, expect_step=16, SIGNAL="SIGINT", AT="2,3", STREAM="1")


@pytest.mark.slow
def test_kill_9_loses_at_most_checkpoint_every_steps(tmp_path):
    # Killed at step 11; the periodic checkpoint of step 8 is where the resume starts.
    _interrupt_and_resume(tmp_path, expect_status=-9, expect_step=8, SIGNAL="SIGKILL", AT="1,4", EVERY="4")


# ----------------------------------------------------------------------------- the command line


def _seqzoo(*args, cwd, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*SEQZOO, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs)


def _classify(tmp_path, *extra) -> list[str]:
    return ["train", "classify", "--quick", "--runs", str(tmp_path / "runs"), *extra]


@pytest.mark.slow
def test_sigterm_to_the_command_prints_the_resume_command_and_it_resumes(tmp_path):
    args = _classify(tmp_path, "--epochs", "40", "--saved-models", str(tmp_path / "sm"))
    proc = subprocess.Popen([*SEQZOO, *args], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:  # stop it once an epoch is done
        runs = list((tmp_path / "runs").glob("classify/*/*/run.json"))
        if runs and json.loads(runs[0].read_text() or "{}").get("epochs_done", 0) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM after step" in last and "resume with: seqzoo train classify --quick" in last
    assert "Traceback" not in err
    resume = last.split("resume with: ")[1].split()[1:]  # after "seqzoo"
    done = _seqzoo(*resume, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Resuming" in done.stdout and "at step" in done.stdout
    assert "40 epochs (resumed after epoch " in done.stdout  # not "40 epochs in" this command's seconds


@contextlib.contextmanager
def _lock_held_elsewhere(folder: Path):
    """A second, real process that holds the lock on ``folder`` until the block ends (it is then
    killed, so its lock is left behind as a dead process leaves it); yields its pid."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from zoo import files; files.lock_folder({str(folder)!r}, ''); print('held', flush=True); input()",
        ],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_two_commands_on_one_run_folder(tmp_path):
    folder = tmp_path / "runs" / "classify" / "gru" / "exp"
    with _lock_held_elsewhere(folder) as pid:
        busy = _seqzoo(*_classify(tmp_path, "--run-name", "exp", "--no-export"), cwd=tmp_path)
        assert busy.returncode == 2
        assert busy.stderr.strip().splitlines()[-1] == (
            f"seqzoo train classify: error: {folder}: another seqzoo process (pid {pid}) is working in this "
            "folder. Wait for it to finish, or give this run another folder (run_name= in Options, --run-name)"
        )
        assert not (folder / "history.csv").exists()
    # The dead holder's lock is taken over, with a note.
    from zoo import files

    files.lock_folder(folder, "")
    try:
        assert (folder / files.LOCK_FILE).read_text() == str(os.getpid())
    finally:
        files.unlock_folder(folder)


def test_two_searches_on_one_project(tmp_path):
    project = tmp_path / "search"
    with _lock_held_elsewhere(project) as pid:
        busy = _seqzoo("tune", "classify", "--quick", "--max-trials", "1", "--project", str(project), cwd=tmp_path)
        assert busy.returncode != 0 and "Traceback" not in busy.stderr
        assert (
            busy.stderr.strip()
            .splitlines()[-1]
            .endswith(
                f"{project}: another seqzoo process (pid {pid}) is working in this folder. Wait for it to finish, "
                "or search into another folder (project= in tuning.tune, --project)"
            )
        ), busy.stderr[-2000:]


# ----------------------------------------------------------------------------- read-only and full disks


def _mount_tmpfs(path: Path, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join(options)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A mounter of tmpfs filesystems (``size=...``, ``ro``), unmounted after the test; skips where
    the machine does not allow mounting (no root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(name: str, *options: str) -> Path:
        path = tmp_path / name
        if not _mount_tmpfs(path, *options):
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _read_only_folder(tmp_path, small_disk) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return small_disk("ro", "size=1m", "ro")


def test_read_only_export_root_fails_before_training(tmp_path, small_disk):
    ro = _read_only_folder(tmp_path, small_disk)
    done = _seqzoo(*_classify(tmp_path, "--saved-models", str(ro / "models")), cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"seqzoo train classify: error: --saved-models must be a folder seqzoo can write exports into, got '{ro}/models'. "
        )
    )
    assert "Epoch" not in done.stdout and not list((tmp_path / "runs").glob("**/history.csv"))


@pytest.mark.slow
def test_full_export_disk_keeps_the_export_and_seqzoo_export_redoes_it(tmp_path, small_disk):
    full = small_disk("full", "size=64k")
    done = _seqzoo(*_classify(tmp_path, "--saved-models", str(full), "--run-name", "r"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    run_dir = tmp_path / "runs" / "classify" / "gru" / "r"
    assert line == (
        f"seqzoo train classify: error: {full}/classify/gru: the export could not be written (No space left on device). "
        "Nothing is lost: the export is kept in the run folder. Free space or choose another folder, then run: "
        f"seqzoo export {run_dir} [--saved-models DIR]"
    )
    assert not [p for p in full.rglob("*") if p.is_file()], "a half-written export was left behind"
    redo = _seqzoo("export", str(run_dir), "--saved-models", str(tmp_path / "big"), cwd=tmp_path, timeout=60)
    assert redo.returncode == 0, redo.stderr
    version = tmp_path / "big" / "classify" / "gru" / "1"
    assert redo.stdout.strip() == f"Exported to {version}"
    assert json.loads((version / "card.json").read_text())["version"] == 1
    assert (version / "saved_model.pb").is_file() and (version / "model.keras").is_file()


@pytest.mark.slow
def test_full_run_folder_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, small_disk):
    try:
        runs = small_disk("runs", "size=256k")
        limit = None
    except pytest.skip.Exception:  # no mount: a file-size limit on the child stands in for the full disk
        runs, limit = tmp_path / "runs", 64 * 1024

    def cap():
        if limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = ["train", "classify", "--quick", "--units", "256", "--runs", str(runs), "--no-export"]
    done = _seqzoo(*args, cwd=tmp_path, preexec_fn=cap)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("seqzoo train classify: error: ") and "could not be written (" in line, line
    assert "Traceback" not in done.stderr
    assert not [p for p in runs.rglob("*.tmp-*")], "a temporary file was left behind"


# ----------------------------------------------------------------------------- untrusted export files


def _export_folder(tmp_path: Path, card: dict | str) -> Path:
    folder = tmp_path / "saved_models" / "textgen" / "lstm" / "1"
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(card if isinstance(card, str) else json.dumps(card))
    return folder


def _keras_archive(path: Path, config: dict) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))


def test_foreign_or_damaged_model_files_are_one_clear_error(tmp_path):
    from tasks.export import load_keras

    folder = _export_folder(tmp_path, {"task": "textgen", "model": "lstm"})
    _keras_archive(folder / "model.keras", {"module": "evil.payload", "class_name": "Backdoor", "config": {}})
    with pytest.raises(FileProblem, match=r"model.keras: cannot be loaded: .*Backdoor.*export the model again"):
        load_keras(folder)
    (folder / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FileProblem, match=r"model.keras: cannot be loaded: "):
        load_keras(folder)


def test_a_card_cannot_point_outside_its_export(tmp_path):
    from tasks.generate import load_sampler

    card = {"task": "textgen", "model": "lstm", "config": {"model": "lstm"}}
    folder = _export_folder(tmp_path, {**card, "textgen": {"vocab_file": "../../../../etc/passwd", "seq_len": 8}})
    with pytest.raises(FileProblem, match=r"names the file '../../../../etc/passwd', which lies outside the export"):
        load_sampler(folder)


def test_generate_on_a_damaged_card_is_one_line(tmp_path):
    folder = _export_folder(tmp_path, "{not json")
    done = _seqzoo("generate", str(folder), cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"seqzoo generate: error: {folder}/card.json: the card is not valid JSON (Expecting property name enclosed "
        "in double quotes: line 1 column 2 (char 1)). The export is damaged or was not written by seqzoo: export "
        "the model again (seqzoo export RUN_DIR)"
    )
