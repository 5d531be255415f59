"""A distributed search with real processes that die: a SIGKILLed worker (restarted by the launcher, or
given up on by the chief), a SIGKILLed chief; the summary at the end of a search; bad input.

The trials train test_tuning's toy task (``python -m tuning test_tuning``) on loopback.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tuning import SMALL, _env, _events, _trials, _tune, _tune_main

# Long enough trials (about 2 s each here) that a worker can be killed in the middle of one.
LONG = ["--samples", "2048", "--models", "gru", "--epochs", "2", *SMALL]


def _wait(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a process exited while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running_trial_of(project: Path, tuner: str | None = None):
    """(trial id, pid, tuner) of a trial that started and has not ended, or None."""
    events = _events(project)
    ended = {e["trial"] for e in events if e["event"] == "end"}
    for e in events:
        if e["event"] == "start" and e["trial"] not in ended and (tuner is None or e["tuner"] == tuner):
            return e["trial"], e["pid"], e["tuner"]
    return None


def _kill_mid_trial(project: Path, procs, tuner: str | None = None, timeout: float = 240):
    """SIGKILL the worker process of a running trial; (trial, pid, tuner) of what was killed."""
    trial, pid, who = _wait(lambda: _running_trial_of(project, tuner), timeout, "a running trial", procs)
    os.kill(pid, signal.SIGKILL)
    return trial, pid, who


def _no_trial_left_running(project: Path) -> dict[str, dict]:
    trials = _trials(project)
    assert trials and {t["status"] for t in trials.values()} <= {"COMPLETED", "FAILED"}, {
        k: t["status"] for k, t in trials.items()
    }
    return trials


# ----------------------------------------------------------------------------- the launcher restarts a dead worker


@pytest.mark.slow
def test_launcher_restarts_a_killed_worker_which_resumes_its_trial(tmp_path):
    """--workers 2; worker1 is SIGKILLed in the middle of a trial: the launcher says so, starts worker1
    again, the chief hands it back the same trial, and the search ends with every trial COMPLETED."""
    project = tmp_path / "project"
    argv = _tune(
        "--max-trials", "4", "--project", str(project), "--no-export", *LONG,
        "--workers", "2", "--timeout", "400", "--heartbeat", "1", "--worker-timeout", "60",
    )  # fmt: skip
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        launcher = subprocess.Popen(argv, env=_env(), cwd=tmp_path, stdout=out, stderr=err)
        try:
            trial, pid, _ = _kill_mid_trial(project, [launcher], tuner="worker1")
            launcher.wait(timeout=400)
        finally:
            if launcher.poll() is None:
                launcher.kill()
    out, err = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert launcher.returncode == 0, out[-3000:] + err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("launcher: worker1"))
    assert f"(pid {pid}) was killed by SIGKILL (signal 9); log {project / 'logs' / 'worker1.log'}" in line
    assert "restarting it as worker1, which gets back its unfinished trial if it had one (death 1 of at most 3)" in line
    trials = _no_trial_left_running(project)
    assert {t["status"] for t in trials.values()} == {"COMPLETED"} and len(trials) == 4
    starts = [e for e in _events(project) if e["event"] == "start" and e["trial"] == trial]
    assert [e["tuner"] for e in starts] == ["worker1", "worker1"] and starts[0]["pid"] == pid != starts[1]["pid"]
    rows = {r["trial"]: r for r in csv.DictReader((project / "results.csv").open())}
    assert rows[trial]["runs"] == "2" and rows[trial]["status"] == "COMPLETED"
    assert "summary: 4 trials: 4 completed, 0 failed, 1 re-run after their process died" in out
    assert f"re-run: trial {trial} started 2 times, completed" in out
    assert "Summary: 4 trials" in (project / "results.md").read_text()


# ----------------------------------------------------------------------------- hand-started workers and chief


def _chief_and_workers(tmp_path, project, port, n, *extra_chief, worker_flags=()):
    common = ["--max-trials", "4", "--project", str(project), "--no-export", *LONG]
    chief = subprocess.Popen(
        _tune(*common, "--chief", f"127.0.0.1:{port}", "--expect-workers", str(n), "--timeout", "300", *extra_chief),
        env=_env(),
        cwd=tmp_path,
        stdout=open(tmp_path / "chief.log", "w"),  # noqa: SIM115 (the child holds it)
        stderr=subprocess.STDOUT,
    )
    _wait(lambda: "serving the oracle" in (tmp_path / "chief.log").read_text(), 240, "the chief", [chief])
    workers = [
        subprocess.Popen(
            _tune(*common, "--worker", f"127.0.0.1:{port}", "--tuner-id", f"w{i}", *worker_flags),
            env=_env(),
            cwd=tmp_path,
            stdout=open(tmp_path / f"w{i}.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for i in range(n)
    ]
    return chief, workers


def _stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_chief_gives_up_on_a_worker_that_stopped_reporting(tmp_path):
    """Two hand-started workers; w0 is SIGKILLed mid-trial and never comes back: after --worker-timeout the
    chief marks its trial FAILED with the reason, w1 runs the rest, and the search ends on its own."""
    from tuning.distributed import free_port

    project = tmp_path / "project"
    chief, workers = _chief_and_workers(
        tmp_path,
        project,
        free_port(),
        2,
        "--worker-timeout",
        "8",
        "--heartbeat",
        "1",
        worker_flags=("--heartbeat", "1"),
    )
    try:
        trial, _, _ = _kill_mid_trial(project, [chief], tuner="w0")
        start = time.monotonic()
        chief.wait(timeout=300)
        workers[1].wait(timeout=60)
    finally:
        _stop(chief, *workers)
    log = (tmp_path / "chief.log").read_text()
    assert chief.returncode == 0, log[-3000:]
    assert time.monotonic() - start < 300
    assert "chief: worker w0 stopped reporting (nothing for " in log and f"its trial {trial} is marked FAILED" in log
    trials = _no_trial_left_running(project)
    assert trials[trial]["status"] == "FAILED" and "worker w0 stopped reporting" in trials[trial]["message"]
    assert sorted(t["status"] for t in trials.values()).count("COMPLETED") == len(trials) - 1
    assert f"failed: trial {trial}: worker w0 stopped reporting" in log
    assert workers[1].returncode == 0


@pytest.mark.slow
def test_workers_exit_within_the_connect_timeout_when_the_chief_is_killed(tmp_path):
    from tuning.distributed import EXIT_LOST_CHIEF, free_port

    project = tmp_path / "project"
    chief, workers = _chief_and_workers(
        tmp_path, project, free_port(), 1, worker_flags=("--heartbeat", "1", "--connect-timeout", "5")
    )
    try:
        _wait(lambda: _running_trial_of(project), 240, "a running trial", [chief, *workers])
        chief.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        workers[0].wait(timeout=60)
        took = time.monotonic() - killed
    finally:
        _stop(chief, *workers)
    log = (tmp_path / "w0.log").read_text()
    assert workers[0].returncode == EXIT_LOST_CHIEF, log[-3000:]
    assert took < 5 + 3, took  # --connect-timeout, and the exit itself
    lines = [x for x in log.splitlines() if "lost the tuning chief" in x]
    assert len(lines) == 1 and f"status {EXIT_LOST_CHIEF}" in lines[0], log[-2000:]


@pytest.mark.slow
def test_launcher_reports_a_dead_chief_and_exits_with_the_documented_status(tmp_path):
    """The launcher's chief is SIGKILLed: the launcher says so in one line, its workers exit within the
    connect timeout, and its exit status is EXIT_LOST_CHIEF."""
    from tuning.distributed import EXIT_LOST_CHIEF

    project = tmp_path / "project"
    argv = _tune(
        "--max-trials", "4", "--project", str(project), "--no-export", *LONG,
        "--workers", "1", "--timeout", "300", "--connect-timeout", "5", "--heartbeat", "1",
    )  # fmt: skip
    launcher = subprocess.Popen(
        argv, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait(lambda: _running_trial_of(project), 240, "a running trial", [launcher])
        chief = _chief_pid(launcher.pid)
        os.kill(chief, signal.SIGKILL)
        killed = time.monotonic()
        out, err = launcher.communicate(timeout=60)
        took = time.monotonic() - killed
    finally:
        _stop(launcher)
    assert launcher.returncode == EXIT_LOST_CHIEF, out[-2000:] + err[-2000:]
    assert took < 5 + 10, took
    [line] = [x for x in err.splitlines() if x.startswith("launcher: the chief")]
    assert f"(pid {chief}) was killed by SIGKILL (signal 9)" in line and f"exit status {EXIT_LOST_CHIEF}" in line
    worker_log = (project / "logs" / "worker0.log").read_text()
    assert len([x for x in worker_log.splitlines() if "lost the tuning chief" in x]) == 1, worker_log[-2000:]


def _chief_pid(launcher_pid: int) -> int:
    """The launcher's child that runs with --chief."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == launcher_pid and b"--chief" in cmdline:
            return int(entry.name)
    raise AssertionError("no chief process under the launcher")


# ----------------------------------------------------------------------------- summary and bad input (no processes)


def test_summary_counts_completed_failed_and_rerun_trials():
    import keras_tuner as kt

    from tuning.search import failure_reason, summary

    rows = [
        {"trial": "0", "status": "COMPLETED", "score": 0.5, "runs": 1, "reason": "", "model": "gru"},
        {"trial": "1", "status": "COMPLETED", "score": 0.75, "runs": 2, "reason": "", "model": "lstm"},
        {"trial": "2", "status": "FAILED", "score": None, "runs": 1, "reason": "worker w0 stopped reporting"},
    ]
    lines = summary(rows, kt.Objective("val_accuracy", "max"))
    assert lines == [
        "summary: 3 trials: 2 completed, 1 failed, 1 re-run after their process died",
        "  re-run: trial 1 started 2 times, completed",
        "  failed: trial 2: worker w0 stopped reporting",
        "  best: trial 1, val_accuracy 0.75 (lstm)",
    ]
    assert summary(rows, kt.Objective("val_loss", "min"))[-1] == "  best: trial 0, val_loss 0.5 (gru)"
    assert summary(rows[2:], kt.Objective("val_accuracy", "max"))[-1] == "  best: none (no trial completed)"
    assert failure_reason("Traceback (most recent call last):\n  File x\nValueError: bad units\n") == (
        "ValueError: bad units"
    )


def test_describe_exit():
    from tuning.distributed import describe_exit

    assert describe_exit(-9) == "was killed by SIGKILL (signal 9)"
    assert describe_exit(-15) == "was killed by SIGTERM (signal 15)"
    assert describe_exit(3) == "exited with status 3"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heartbeat", "0"], "--heartbeat must be a positive number of seconds, got 0"),
        (["--worker-timeout", "-1"], "--worker-timeout must be a positive number of seconds, got -1"),
        (["--heartbeat", "10", "--worker-timeout", "20"], "--worker-timeout 20 must be at least 3 x --heartbeat"),
        (["--max-worker-deaths", "-1"], "--max-worker-deaths must be >= 0, got -1"),
        (["--connect-timeout", "0"], "--connect-timeout must be a positive number of seconds"),
    ],
)
def test_bad_fault_flags_are_one_clear_line(tmp_path, capsys, argv, message):
    rc = _tune_main("--project", str(tmp_path / "p"), "--samples", "64", *SMALL, *argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_help_states_the_timeouts_and_exit_statuses():
    out = subprocess.run(
        [sys.executable, "-m", "tuning", "--help"], env=_env(), capture_output=True, text=True, timeout=60
    ).stdout
    for text in ("--heartbeat S", "--worker-timeout S", "--max-worker-deaths N", "exit status:", "  4  the chief"):
        assert text in out, text


@pytest.mark.slow
def test_too_many_worker_deaths_stop_the_search_with_results(tmp_path):
    """--max-worker-deaths 0: the first death stops the search; the chief marks the running trial FAILED,
    writes the results with the summary, and the launcher exits with EXIT_STOPPED."""
    from tuning.distributed import EXIT_STOPPED

    project = tmp_path / "project"
    argv = _tune(
        "--max-trials", "4", "--project", str(project), "--no-export", *LONG,
        "--workers", "1", "--timeout", "300", "--max-worker-deaths", "0",
    )  # fmt: skip
    launcher = subprocess.Popen(
        argv, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        trial, pid, _ = _kill_mid_trial(project, [launcher])
        out, err = launcher.communicate(timeout=120)
    finally:
        _stop(launcher)
    assert launcher.returncode == EXIT_STOPPED, out[-2000:] + err[-2000:]
    assert "1 worker deaths, more than --max-worker-deaths 0: stopping the search" in err
    trials = _no_trial_left_running(project)
    assert trials[trial]["status"] == "FAILED" and "search stopped by SIGTERM" in trials[trial]["message"]
    assert f"failed: trial {trial}: search stopped by SIGTERM before this trial finished" in out
    assert "search stopped: SIGTERM received; exit status 3" in err
    assert (project / "results.csv").is_file()
