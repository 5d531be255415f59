"""KerasTuner's chief/worker mode, and a launcher for one chief + N workers on this machine.

KerasTuner reads ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT``; ``--chief HOST:PORT`` / ``--worker HOST:PORT`` set
them. The chief holds the oracle and serves it over gRPC **without TLS or
authentication** (KerasTuner's ``add_insecure_port``), so it binds to
127.0.0.1 unless told otherwise; bind it to another address only on a trusted
network. Workers and the chief share the ``--project`` folder (checkpoints and
per-trial records are files there): the same machine or a shared filesystem.

Differences from ``keras_tuner``'s own ``start_server`` (all bounded, nothing hangs):
the port is checked before the data is loaded (a port in use is a clear
error; gRPC's SO_REUSEPORT is turned off so a second chief cannot silently
share it), the chief polls for the end every 0.2 s instead of 20 s, it can
hold back trials until ``--expect-workers`` workers have asked (so a search is
shared from its first trial), and it gives up after ``--timeout`` seconds.
Workers check that the chief answers within ``--connect-timeout`` seconds and
their gRPC calls time out after ``--rpc-timeout`` (keras_tuner's is an hour).

When a process dies (see docs/tuning.md, "When a worker dies"):

- Every worker sends the chief a heartbeat every ``--heartbeat`` seconds from a thread of its
  own (KerasTuner's workers are silent while they train). The chief marks the trial of a worker
  it has not heard from for ``--worker-timeout`` seconds FAILED, with that reason, and forgets
  the worker, so the search always ends.
- The ``--workers N`` launcher supervises its processes: a worker that dies is reported in one
  line (which worker, its exit status or signal, its log) and started again with the same
  tuner id, so the oracle hands it back its unfinished trial (KerasTuner's ``create_trial``
  returns a tuner's ongoing trial to a tuner with that id). After more than
  ``--max-worker-deaths`` deaths it stops the search: the workers are stopped, and the chief
  marks their trials FAILED, writes the results and exits with :data:`EXIT_STOPPED`.
- A worker that cannot reach its chief for ``--connect-timeout`` seconds says so in one line and
  exits with :data:`EXIT_LOST_CHIEF`; so does the launcher when its chief dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"

# Exit statuses of `seqzoo tune` (chief, worker and launcher alike); --help lists them.
EXIT_OK = 0  # the search ended: every trial COMPLETED or FAILED, results written
EXIT_ERROR = 1  # an error, or --timeout passed
EXIT_USAGE = 2  # bad input (one line naming the flag)
EXIT_STOPPED = 3  # the search was stopped (too many worker deaths, SIGTERM/SIGINT to the chief): results written
EXIT_LOST_CHIEF = 4  # a worker or the launcher lost its chief
EXIT_STATUSES = {
    EXIT_OK: "the search ended (every trial completed or failed; results written)",
    EXIT_ERROR: "an error, or --timeout passed",
    EXIT_USAGE: "bad input",
    EXIT_STOPPED: "the search was stopped early (more than --max-worker-deaths worker deaths, or SIGTERM/SIGINT "
    "to the chief); unfinished trials are FAILED and the results are written",
    EXIT_LOST_CHIEF: "the chief died or stopped answering (worker: for --connect-timeout seconds)",
}
# A heartbeat is KerasTuner's GetTrial request for this prefix + the worker's tuner id.
HEARTBEAT = "seqzoo-heartbeat:"


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``"127.0.0.1:8000"`` -> ("127.0.0.1", 8000)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{flag} {text!r}: expected HOST:PORT with a port in 1..65535, e.g. {flag} 127.0.0.1:8000")
    return host, int(port_text)


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(
                f"Cannot bind the chief to {host}:{port}: {exc.strerror or exc} (is the port already in use?); "
                "pick another port, or use --workers N, which picks a free one"
            ) from None


def set_environment(tuner_id: str, host: str, port: int) -> None:
    """The variables KerasTuner reads to run distributed."""
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)


def wait_for_chief(host: str, port: int, timeout: float, rpc_timeout: float) -> None:
    """Fail clearly when the chief does not answer; bound every later gRPC call."""
    import grpc
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = rpc_timeout  # read by every OracleClient call
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ValueError(
            f"Cannot reach the tuning chief at {host}:{port} within {timeout:g} s: start it first with "
            f"'seqzoo tune TASK ... --chief {host}:{port}' (same --project), check the address, or raise "
            "--connect-timeout"
        ) from None
    finally:
        channel.close()


def describe_exit(returncode: int) -> str:
    """``-9`` -> "was killed by SIGKILL (signal 9)"; ``1`` -> "exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "a signal"
        return f"was killed by {name} (signal {-returncode})"
    return f"exited with status {returncode}"


class Heartbeat(threading.Thread):
    """A worker's heartbeat: tells the chief every ``interval`` seconds that ``tuner_id`` is alive.

    When the chief has not answered for ``lost_after`` seconds, it prints one line and ends the
    process with :data:`EXIT_LOST_CHIEF` at once (the main thread may be inside a training step
    that does not return for a long time, and nothing it computes could be reported).
    """

    def __init__(self, host: str, port: int, tuner_id: str, *, interval: float, lost_after: float) -> None:
        super().__init__(name=f"heartbeat-{tuner_id}", daemon=True)
        self.address, self.tuner_id = f"{host}:{port}", tuner_id
        self.interval, self.lost_after = interval, lost_after
        self.stopped = threading.Event()

    def run(self) -> None:
        import grpc
        from keras_tuner.src import protos

        channel = grpc.insecure_channel(self.address)
        stub = protos.get_service_grpc().OracleStub(channel)
        request = protos.get_service().GetTrialRequest(trial_id=HEARTBEAT + self.tuner_id)
        answered = time.monotonic()
        while not self.stopped.wait(self.interval):
            try:
                stub.GetTrial(request, timeout=max(1.0, min(self.interval, 10.0)))
                answered = time.monotonic()
            except grpc.RpcError as exc:
                if self.stopped.is_set():
                    break
                silent = time.monotonic() - answered
                if silent + self.interval > self.lost_after:  # the next beat would be past --connect-timeout
                    print(
                        f"{self.tuner_id}: lost the tuning chief at {self.address} (no answer for {silent:.0f} s, "
                        f"--connect-timeout {self.lost_after:g}; {exc.code().name}); exiting with status "
                        f"{EXIT_LOST_CHIEF}",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(EXIT_LOST_CHIEF)  # noqa: SLF001 (the main thread may be inside a long TF op)
        channel.close()

    def stop(self) -> None:
        self.stopped.set()


def serve_chief(
    tuner,
    host: str,
    port: int,
    *,
    expect_workers: int = 0,
    wait_workers_s: float = 120,
    timeout_s: float = 3600,
    worker_timeout_s: float = 120,
) -> str | None:
    """Serve ``tuner.oracle`` until the search is done (every worker told to stop, no trial running).

    A worker not heard from (trial requests and results, heartbeats) for ``worker_timeout_s``
    seconds is lost: its running trial is marked FAILED with that reason and the worker is
    forgotten, so the search ends without it. SIGTERM or SIGINT stops the search: running trials
    are marked FAILED. Returns None when the search ended, else why it was stopped.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief
    from keras_tuner.src.engine import trial as trial_module

    oracle = tuner.oracle
    service = protos.get_service()
    status = trial_module.TrialStatus

    def save_trial(trial) -> None:
        trial.save(os.path.join(tuner.get_trial_dir(trial.trial_id), "trial.json"))

    class Servicer(oracle_chief.OracleServicer):
        """KerasTuner's servicer; holds trials back until ``expect_workers`` workers asked for one,
        records when each worker was last heard from, and answers heartbeats."""

        def __init__(self, oracle):
            super().__init__(oracle)
            self.seen: set[str] = set()
            self.hold_until = time.monotonic() + wait_workers_s
            self.started = time.monotonic()
            self.heard: dict[str, float] = {}
            self.lost: dict[str, str] = {}  # trial id -> why it failed
            self.stop_reason: str | None = None
            self.lock = threading.Lock()

        def hear(self, tuner_id: str) -> None:
            self.heard[tuner_id] = time.monotonic()

        def hear_trial(self, trial_id: str) -> None:
            for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
                if trial.trial_id == trial_id:
                    self.hear(tuner_id)

        def CreateTrial(self, request, context):  # noqa: N802 (gRPC's name)
            self.hear(request.tuner_id)
            self.seen.add(request.tuner_id)
            if self.stop_reason is not None:
                self.stop_triggered = True
                self.oracle.tuner_ids.discard(request.tuner_id)
                stopped = trial_module.Trial(self.oracle.get_space(), status=status.STOPPED)
                return service.CreateTrialResponse(trial=stopped.to_proto())
            if len(self.seen) < expect_workers and time.monotonic() < self.hold_until:
                time.sleep(0.2)  # the worker asks again at once on IDLE
                idle = trial_module.Trial(self.oracle.get_space(), status=status.IDLE)
                return service.CreateTrialResponse(trial=idle.to_proto())
            return super().CreateTrial(request, context)

        def UpdateTrial(self, request, context):  # noqa: N802
            self.hear_trial(request.trial_id)
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):  # noqa: N802
            trial_id = request.trial.trial_id
            self.hear_trial(trial_id)
            if trial_id in self.lost:  # its worker was given up on; the trial stays FAILED
                print(
                    f"chief: trial {trial_id} ended after it was marked failed ({self.lost[trial_id]}); its result "
                    "is not used",
                    flush=True,
                )
                return service.EndTrialResponse()
            with self.lock:
                try:
                    return super().EndTrial(request, context)
                except RuntimeError as exc:  # KerasTuner: too many consecutive failed trials
                    self.finish_failed(trial_id, None)
                    self.stop_reason = str(exc).splitlines()[0]
                    return service.EndTrialResponse()

        def GetTrial(self, request, context):  # noqa: N802
            if request.trial_id.startswith(HEARTBEAT):
                self.hear(request.trial_id[len(HEARTBEAT) :])
                return service.GetTrialResponse()
            return super().GetTrial(request, context)

        def finish_failed(self, trial_id: str, reason: str | None) -> None:
            """Make ``trial_id`` FAILED (with ``reason``) and no longer running, on disk too."""
            trial = self.oracle.trials[trial_id]
            if reason is not None:
                trial.status, trial.message = status.FAILED, reason
                try:
                    self.oracle.end_trial(trial)
                except RuntimeError as exc:  # too many consecutive failed trials: stop
                    self.stop_reason = str(exc).splitlines()[0]
            for tuner_id, ongoing in list(self.oracle.ongoing_trials.items()):
                if ongoing.trial_id == trial_id:
                    self.oracle.ongoing_trials.pop(tuner_id, None)
            save_trial(trial)
            self.oracle.save()

        def give_up_on(self, tuner_id: str, why: str) -> None:
            """Forget a lost worker; its running trial becomes FAILED with ``why``."""
            with self.lock:
                trial = self.oracle.ongoing_trials.get(tuner_id)
                if trial is not None:
                    self.lost[trial.trial_id] = why
                    self.finish_failed(trial.trial_id, why)
                self.oracle.tuner_ids.discard(tuner_id)
                self.heard.pop(tuner_id, None)
            running = f"; its trial {trial.trial_id} is marked FAILED" if trial is not None else ""
            print(f"chief: {why}{running}", flush=True)

        def stop_all(self, why: str, reason: str) -> None:
            """Stop the search (for ``reason``): every running trial FAILED with ``why``, no worker waited for."""
            with self.lock:
                self.stop_reason = self.stop_reason or reason
                for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
                    self.lost[trial.trial_id] = why
                    self.finish_failed(trial.trial_id, why)
                    print(f"chief: trial {trial.trial_id} of {tuner_id} marked FAILED ({why})", flush=True)
                self.oracle.tuner_ids.clear()
                self.stop_triggered = True

    servicer = Servicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise ValueError(f"Cannot bind the chief to {host}:{port} (is the port already in use?); pick another port")
    tuner.save()
    signalled: list[str] = []

    def on_signal(signum, frame):
        signalled.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    print(
        f"chief: serving the oracle on {host}:{port} (gRPC, no TLS); waiting for workers; a worker silent for "
        f"{worker_timeout_s:g} s is given up on (--worker-timeout)",
        flush=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            if signalled:
                servicer.stop_all(
                    f"search stopped by {signalled[0]} before this trial finished", f"{signalled[0]} received"
                )
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"chief: the search did not finish within --timeout {timeout_s:g} s "
                    f"(running trials: {sorted(t.trial_id for t in oracle.ongoing_trials.values())})"
                )
            now = time.monotonic()
            for tuner_id in sorted(set(oracle.tuner_ids) | set(oracle.ongoing_trials)):
                silent = now - servicer.heard.get(tuner_id, servicer.started)
                if silent > worker_timeout_s:
                    servicer.give_up_on(
                        tuner_id, f"worker {tuner_id} stopped reporting (nothing for {silent:.0f} s, --worker-timeout)"
                    )
            if servicer.stop_reason is not None and not oracle.ongoing_trials:
                servicer.stop_triggered = True
                oracle.tuner_ids.clear()
            time.sleep(0.2)
    finally:
        server.stop(grace=2)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return servicer.stop_reason


@dataclass
class _Child:
    """A process the launcher started and watches."""

    name: str
    argv: list[str]
    log: Path | None = None
    deaths: int = 0
    proc: subprocess.Popen | None = None
    handle: IO[str] | None = field(default=None, repr=False)

    def start(self, note: str | None = None) -> None:
        if self.log is not None:
            if self.handle is None:
                self.handle = open(self.log, "a")  # noqa: SIM115 (closed by close())
            if note:
                self.handle.write(f"\n--- launcher: {note} ---\n")
                self.handle.flush()
            self.proc = subprocess.Popen(self.argv, stdout=self.handle, stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen(self.argv)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _stop(children: Sequence[_Child], grace: float = 10) -> None:
    """SIGTERM every live child, then SIGKILL what is left after ``grace`` seconds."""
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.terminate()
    end = time.monotonic() + grace
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def launch(
    child_argv: Sequence[str],
    workers: int,
    host: str,
    project: Path,
    timeout_s: float,
    *,
    max_deaths: int = 3,
    connect_timeout_s: float = 30,
) -> int:
    """Start one chief and ``workers`` workers (``python -m tuning ...``) here and supervise them.

    A worker that dies is reported in one line and started again with its tuner id (the chief
    hands it back its unfinished trial); after more than ``max_deaths`` deaths in all the search
    is stopped (:data:`EXIT_STOPPED`). A dead chief stops the workers (:data:`EXIT_LOST_CHIEF`).
    Returns the exit status (see :data:`EXIT_STATUSES`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Received --workers {workers!r}, expected a positive integer")
    if isinstance(max_deaths, bool) or not isinstance(max_deaths, int) or max_deaths < 0:
        raise ValueError(f"Received --max-worker-deaths {max_deaths!r}, expected an integer >= 0")
    port = free_port(host)
    address = f"{host}:{port}"
    logs = project / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "tuning", *child_argv, "--timeout", str(timeout_s)]
    chief = _Child("chief", [*base, "--chief", address, "--expect-workers", str(workers)])
    crew = [
        _Child(f"worker{i}", [*base, "--worker", address, "--tuner-id", f"worker{i}"], log=logs / f"worker{i}.log")
        for i in range(workers)
    ]
    for log in logs.glob("worker*.log"):
        log.unlink()  # this search's logs only (a restarted worker appends to its own)
    print(
        f"launcher: chief on {address}, {workers} worker(s); worker logs in {logs}; a dead worker is restarted "
        f"(at most {max_deaths} deaths in all, --max-worker-deaths)",
        flush=True,
    )

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt  # the finally below stops the chief (which writes the results) and the workers

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    chief.start()
    deaths = 0
    deadline = time.monotonic() + timeout_s + 60
    try:
        # The workers start once the chief serves, so --connect-timeout counts only a chief that is up.
        while chief.proc.poll() is None and not _accepts(host, port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"launcher: the chief did not start serving within {timeout_s:g} s; stopped it")
            time.sleep(0.2)
        if chief.proc.poll() is None:
            for worker in crew:
                worker.start()
        while True:
            code = chief.proc.poll()
            if code is not None:
                if code == 0:  # the search ended; the workers were told to stop and exit on their own
                    _wait_for(crew, connect_timeout_s + 10)
                    return EXIT_OK if all(w.proc is None or w.proc.returncode == 0 for w in crew) else EXIT_ERROR
                status = EXIT_LOST_CHIEF if code < 0 or code == EXIT_LOST_CHIEF else code
                print(
                    f"launcher: the chief (pid {chief.proc.pid}) {describe_exit(code)}; the workers stop within "
                    f"--connect-timeout {connect_timeout_s:g} s; exit status {status}",
                    file=sys.stderr,
                    flush=True,
                )
                _wait_for(crew, connect_timeout_s + 5)  # each worker says in its log that it lost the chief
                return status
            for worker in crew:
                code = worker.proc.poll() if worker.proc is not None else 0
                if code is None or code == 0:
                    continue
                deaths += 1
                worker.deaths += 1
                what = f"launcher: {worker.name} (pid {worker.proc.pid}) {describe_exit(code)}; log {worker.log}"
                if deaths > max_deaths:
                    print(
                        f"{what}; {deaths} worker deaths, more than --max-worker-deaths {max_deaths}: stopping the "
                        "search",
                        file=sys.stderr,
                        flush=True,
                    )
                    _stop(crew)
                    _stop([chief], grace=60)  # SIGTERM: the chief fails the unfinished trials and writes the results
                    return EXIT_STOPPED
                print(
                    f"{what}; restarting it as {worker.name}, which gets back its unfinished trial if it had one "
                    f"(death {deaths} of at most {max_deaths})",
                    file=sys.stderr,
                    flush=True,
                )
                worker.start(note=f"restarted after it {describe_exit(code)} (death {deaths})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"launcher: the search did not finish within {timeout_s:g} s; stopped it")
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(crew)
        _stop([chief], grace=60)
        for child in [*crew, chief]:
            child.close()


def _wait_for(children: Sequence[_Child], seconds: float) -> None:
    """Wait up to ``seconds`` for the children to exit; the rest are stopped."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(c.proc is not None and c.proc.poll() is None for c in children):
        time.sleep(0.2)
    _stop(children)


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
