"""Peak memory of one ``seqzoo tune`` process against the number of trials it has run.

Runs the search a user runs,

    seqzoo tune classify --tuner random --quick --max-trials N --verbose 0      (--task picks another task)

as a child process (``python -m tuning``, a throwaway ``--project``, ``--no-export``) and, each
time the project's ``events.jsonl`` records the end of a trial, reads the child's peak resident
memory (``VmHWM``) and current resident memory (``VmRSS``) from ``/proc``. The growth per trial
is the least-squares slope of the peak over the trials after ``--warmup`` (the first trials
trace Keras's functions and load TensorFlow's kernels once for the process).

    python -m benchmarks.tune_memory                       # 100 trials, writes a RESULTS.md section
    python -m benchmarks.tune_memory --max-trials 20 --no-write
    python -m benchmarks.tune_memory --label before --repo /tmp/seqzoo-before --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ["--tuner", "random", "--quick", "--verbose", "0"]


def memory_mb(pid: int) -> dict[str, float]:
    """``VmHWM`` (peak resident) and ``VmRSS`` of a live process, in MB (2**20 bytes)."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    return out


def ended_trials(project: Path) -> int:
    path = project / "events.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return sum(json.loads(line).get("event") == "end" for line in lines if line.strip().endswith("}"))


def measure(
    max_trials: int, repo: Path, extra: list[str], task: str = "classify", poll_s: float = 0.1
) -> tuple[list[dict], float]:
    """Run the search; one row per finished trial: trials, peak MB, RSS MB, seconds since start."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        argv = [sys.executable, "-m", "tuning", task, *SEARCH, "--max-trials", str(max_trials)]
        argv += ["--project", str(project), "--no-export", *extra]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
        log = Path(tmp) / "search.log"
        start = time.monotonic()
        with open(log, "w") as out:
            child = subprocess.Popen(argv, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
            rows: list[dict] = []
            try:
                while child.poll() is None:
                    done = ended_trials(project)
                    if done > len(rows):
                        try:
                            mem = memory_mb(child.pid)
                        except OSError:  # it just exited
                            break
                        seconds = round(time.monotonic() - start, 1)
                        rows += [{"trials": n, **mem, "seconds": seconds} for n in range(len(rows) + 1, done + 1)]
                    time.sleep(poll_s)
            finally:
                if child.poll() is None:
                    child.kill()
                child.wait()
        if child.returncode != 0:
            raise SystemExit(f"the search failed (exit {child.returncode}):\n{log.read_text()[-3000:]}")
        return rows, time.monotonic() - start


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def marks(n: int) -> list[int]:
    """Rows shown in the table: 1, 2, 5, 10, 20, 30, ... and the last."""
    shown = [k for k in (1, 2, 5) if k <= n] + list(range(10, n + 1, 10))
    return sorted(set(shown + [n]))


def report(rows: list[dict], warmup: int, label: str, command: str, wall: float) -> str:
    after = [r for r in rows if r["trials"] > warmup]
    per_trial = slope([r["trials"] for r in after], [r["VmHWM"] for r in after])
    rss_trial = slope([r["trials"] for r in after], [r["VmRSS"] for r in after])
    lines = [
        f"{label}: `{command}` ({len(rows)} trials, {wall:.0f} s wall)",
        "",
        "| trials | peak MB (VmHWM) | resident MB (VmRSS) |",
        "|---:|---:|---:|",
    ]
    by_n = {r["trials"]: r for r in rows}
    lines += [f"| {n} | {by_n[n]['VmHWM']:.0f} | {by_n[n]['VmRSS']:.0f} |" for n in marks(len(rows))]
    lines += [
        "",
        f"Growth after trial {warmup} (least-squares slope over trials {warmup + 1}..{len(rows)}): "
        f"peak {per_trial:+.2f} MB/trial, resident {rss_trial:+.2f} MB/trial.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tune_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--max-trials", type=int, default=100, help="trials of the search")
    p.add_argument("--task", default="classify", help="the task searched (classify, textgen, movement)")
    p.add_argument("--warmup", type=int, default=10, help="trials left out of the per-trial slope")
    p.add_argument("--repo", type=Path, default=ROOT, help="the seqzoo checkout to run (e.g. an older commit)")
    p.add_argument("--label", default="seqzoo", help="name of this measurement in the report")
    p.add_argument("--extra", default="", help="more flags for seqzoo tune, e.g. '--no-fused'")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    if args.max_trials < 2:
        p.error(f"--max-trials must be at least 2, got {args.max_trials}")
    if not 0 <= args.warmup < args.max_trials - 1:
        p.error(f"--warmup must lie in [0, --max-trials - 2], got {args.warmup}")
    if not (args.repo / "tuning" / "__main__.py").is_file():
        p.error(f"--repo {args.repo}: not a seqzoo checkout (no tuning/__main__.py)")
    extra = args.extra.split()
    rows, wall = measure(args.max_trials, args.repo.resolve(), extra, args.task)
    command = " ".join(["seqzoo tune", args.task, *SEARCH, "--max-trials", str(args.max_trials), *extra])
    text = report(rows, args.warmup, args.label, command, wall)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "command": command, "rows": rows}, indent=1) + "\n")
    if not args.no_write:
        from benchmarks.results import machine, write_section

        body = f"## Memory across tuning trials (`python -m benchmarks.tune_memory`)\n\n{machine()}\n\n{text}\n"
        write_section("tune_memory", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
