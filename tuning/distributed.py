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
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

LOOPBACK = "127.0.0.1"


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


def serve_chief(
    tuner, host: str, port: int, *, expect_workers: int = 0, wait_workers_s: float = 120, timeout_s: float = 3600
) -> None:
    """Serve ``tuner.oracle`` until the search is done (every worker told to stop, no trial running)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief
    from keras_tuner.src.engine import trial as trial_module

    class Servicer(oracle_chief.OracleServicer):
        """KerasTuner's servicer; holds trials back until ``expect_workers`` workers asked for one."""

        def __init__(self, oracle):
            super().__init__(oracle)
            self.seen: set[str] = set()
            self.hold_until = time.monotonic() + wait_workers_s

        def CreateTrial(self, request, context):  # noqa: N802 (gRPC's name)
            self.seen.add(request.tuner_id)
            if len(self.seen) < expect_workers and time.monotonic() < self.hold_until:
                time.sleep(0.2)  # the worker asks again at once on IDLE
                idle = trial_module.Trial(self.oracle.get_space(), status=trial_module.TrialStatus.IDLE)
                return protos.get_service().CreateTrialResponse(trial=idle.to_proto())
            return super().CreateTrial(request, context)

    servicer = Servicer(tuner.oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise ValueError(f"Cannot bind the chief to {host}:{port} (is the port already in use?); pick another port")
    tuner.save()
    server.start()
    print(f"chief: serving the oracle on {host}:{port} (gRPC, no TLS); waiting for workers", flush=True)
    deadline = time.monotonic() + timeout_s
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"chief: the search did not finish within --timeout {timeout_s:g} s "
                    f"(running trials: {sorted(t.trial_id for t in tuner.oracle.ongoing_trials.values())})"
                )
            time.sleep(0.2)
    finally:
        server.stop(grace=2)


def launch(child_argv: Sequence[str], workers: int, host: str, project: Path, timeout_s: float) -> int:
    """Start one chief and ``workers`` workers (``python -m tuning ...``) here; wait for all, bounded."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Received --workers {workers!r}, expected a positive integer")
    port = free_port(host)
    address = f"{host}:{port}"
    logs = project / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "tuning", *child_argv, "--timeout", str(timeout_s)]
    procs: dict[str, subprocess.Popen] = {}
    print(f"launcher: chief on {address}, {workers} worker(s); worker logs in {logs}", flush=True)
    procs["chief"] = subprocess.Popen([*base, "--chief", address, "--expect-workers", str(workers)])
    handles = []
    for i in range(workers):
        log = open(logs / f"worker{i}.log", "w")  # noqa: SIM115 (closed below)
        handles.append(log)
        procs[f"worker{i}"] = subprocess.Popen(
            [*base, "--worker", address, "--tuner-id", f"worker{i}"], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout_s + 60
    try:
        while any(p.poll() is None for p in procs.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"launcher: the search did not finish within {timeout_s:g} s; stopped it")
            if procs["chief"].poll() not in (None, 0):
                break  # the chief failed: nothing left to serve the workers
            time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in handles:
            log.close()
    failed = {name: p.returncode for name, p in procs.items() if p.returncode != 0}
    for name in failed:
        if name != "chief":
            tail = (logs / f"{name}.log").read_text().splitlines()[-5:]
            print(f"launcher: {name} exited with {failed[name]}:\n  " + "\n  ".join(tail), file=sys.stderr)
    return 0 if not failed else (procs["chief"].returncode or 1)
