"""The whole command, as a user runs it: ``seqzoo train textgen --text-file corpus.txt --epochs 1``
against a plain PyTorch script doing the same job (:mod:`benchmarks.torch_textgen`: 90/5/5 split,
one epoch, validation and test loss, a saved model, 200 sampled characters).

Each command runs in a fresh process, so imports, tracing, compiling, evaluation, export and
sampling all count. The two alternate (A B, then B A, ...) so that a busy spell on a shared
machine hits both; the table gives medians, the range, the peak resident memory of each
process (``os.wait4``) and the load average while it ran.

``--phases`` instead runs the seqzoo command once in a child process with timers around its
parts and prints where its seconds go (imports, data, model, first step, the other steps,
evaluation, sampling, export, ...).

    python -m benchmarks.command_speed --text-file corpus.txt --rounds 3 --write
    python -m benchmarks.command_speed --text-file corpus.txt --phases --write

``--write`` puts the table into its section of ``benchmarks/RESULTS.md``.

Needs the ``bench`` extra (``pip install -e .[bench]``: the CPU build of PyTorch).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def seqzoo_command(text_file: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tasks.cli",
        "train",
        "textgen",
        "--text-file",
        text_file,
        "--epochs",
        "1",
        "--runs",
        str(out / "runs"),
        "--saved-models",
        str(out / "saved_models"),
    ]


def torch_command(text_file: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.torch_textgen", "--text-file", text_file, "--out", str(out)]


def thread_environment(threads: int | None) -> dict[str, str]:
    """The environment of a contender: with ``threads``, both TensorFlow and PyTorch (OpenMP, MKL)
    use that many threads, which keeps a comparison on a busy shared machine from measuring
    whose thread pool copes worse with other people's work."""
    env = dict(os.environ)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            env[name] = str(threads)
    return env


def run_once(command: list[str], threads: int | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak resident MiB, 1-minute load average at the end) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=thread_environment(threads)
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{error[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, os.getloadavg()[0]


def compare(text_file: str, rounds: int, threads: int | None = None) -> str:
    """Interleaved rounds of both commands; a Markdown table with the ratio."""
    contenders = {"seqzoo train textgen": seqzoo_command, "PyTorch script": torch_command}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    load_before = os.getloadavg()[0]
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(run_once(contenders[name](text_file, Path(tmp)), threads))
            seconds, mib, load = results[name][-1]
            print(f"round {r + 1}: {name}: {seconds:.1f} s, {mib:.0f} MiB, load {load:.1f}", file=sys.stderr)
    rows = [
        "| command | median s | min .. max s | peak RSS MiB (median) | load avg during |",
        "|---|---:|---:|---:|---:|",
    ]
    medians = {}
    for name, runs in results.items():
        seconds = [s for s, _, _ in runs]
        medians[name] = statistics.median(seconds)
        rows.append(
            f"| {name} | {medians[name]:.1f} | {min(seconds):.1f} .. {max(seconds):.1f} | "
            f"{statistics.median(m for _, m, _ in runs):.0f} | "
            f"{min(lo for _, _, lo in runs):.1f} .. {max(lo for _, _, lo in runs):.1f} |"
        )
    seqzoo, torch = medians.values()
    rows.append("")
    rows.append(
        f"seqzoo / PyTorch wall time: {seqzoo / torch:.2f} (speed ratio PyTorch time / seqzoo time "
        f"{torch / seqzoo:.2f}x); {rounds} interleaved rounds, "
        f"{f'{threads} thread(s) each' if threads else 'default threads'}, load average {load_before:.1f} at the start."
    )
    return "\n".join(rows)


# ----------------------------------------------------------------------------- --phases: where seqzoo's seconds go


def phases(text_file: str) -> str:
    """Runs the seqzoo command in a child process with timers; its table."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.command_speed",
                "--phases-child",
                "--text-file",
                text_file,
                "--out",
                tmp,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    table = out.stdout[out.stdout.index("| phase |") :]
    return (
        f"{table.rstrip()}\n\nWall time of the process, interpreter start and exit included: {wall:.1f} s; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    )


def _phases_child(text_file: str, out: Path) -> None:
    """The seqzoo command in this process, timed by wrapping the functions ``run`` calls."""
    begin = time.perf_counter()
    times: dict[str, float] = {}
    marks: dict[str, float] = {}

    def timed(module, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - t

        setattr(module, name, wrapper)

    import tasks.terminal
    from tasks import cli

    marks["seqzoo modules imported"] = time.perf_counter()
    tasks.terminal.quiet_tensorflow()  # what main_for does after parsing the flags
    marks["TensorFlow imported"] = time.perf_counter()
    import keras

    import tasks.text_generation as textgen
    import tasks.text_generation.export as textgen_export
    import tasks.text_generation.model as textgen_model
    import tasks.text_generation.sampling as sampling
    import zoo.monitor
    import zoo.training

    marks["task modules imported"] = time.perf_counter()
    timed(textgen, "load_data", "data: read, split, vocabulary, tf.data pipelines")
    timed(textgen_model, "build_model", "build the model")
    timed(textgen_model, "compile", "compile (optimizer, loss, metrics)")
    timed(sampling.Sampler, "from_model", "sampler: step model")
    timed(textgen_model, "evaluate", "evaluate validation and test (after fit)")
    timed(textgen_export, "export_model", "export (SavedModel, model.keras, card)")
    timed(zoo.monitor, "plot_grad_norms", "fit: grad_norms.png (matplotlib)")
    timed(textgen, "resolve_run_dir", "run folder")
    timed(sampling.SampleAfterEpoch, "on_epoch_end", "fit: sample 200 characters after the epoch")

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks["fit: train begins"] = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            marks.setdefault("fit: first step done", time.perf_counter())
            marks["fit: last step done"] = time.perf_counter()
            marks["steps"] = batch + 1

        def on_test_begin(self, logs=None):
            marks.setdefault("fit: validation begins", time.perf_counter())

        def on_test_end(self, logs=None):
            marks.setdefault("fit: validation ends", time.perf_counter())

    fit = zoo.training.fit

    def fit_with_clock(*args, callbacks=(), **kwargs):
        t = time.perf_counter()
        try:
            return fit(*args, callbacks=[Clock(), *callbacks], **kwargs)
        finally:
            times["fit (all)"] = time.perf_counter() - t

    zoo.training.fit = fit_with_clock
    timed(textgen, "report", "summary")
    argv = ["train", "textgen", "--text-file", text_file, "--epochs", "1"]
    argv += ["--runs", str(out / "runs"), "--saved-models", str(out / "saved_models")]
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        assert cli.main(argv) == 0
    total = time.perf_counter() - begin

    steps = int(marks["steps"])
    rows = [
        ("import seqzoo's command line (no TensorFlow)", marks["seqzoo modules imported"] - begin),
        (
            "import TensorFlow (quietly, devices probed)",
            marks["TensorFlow imported"] - marks["seqzoo modules imported"],
        ),
        ("import Keras and the textgen task", marks["task modules imported"] - marks["TensorFlow imported"]),
    ]
    for label in (
        "data: read, split, vocabulary, tf.data pipelines",
        "build the model",
        "run folder",
        "sampler: step model",
        "compile (optimizer, loss, metrics)",
    ):
        rows.append((label, times.get(label, 0.0)))
    first = marks["fit: first step done"] - marks["fit: train begins"]
    rest = marks["fit: last step done"] - marks["fit: first step done"]
    validation = marks["fit: validation ends"] - marks["fit: validation begins"]
    sample = times.get("fit: sample 200 characters after the epoch", 0.0)
    plot = times.get("fit: grad_norms.png (matplotlib)", 0.0)
    rows += [
        ("fit: first step (trace, compile, one step)", first),
        (f"fit: the other {steps - 1} steps", rest),
        ("fit: validation (traced on first use)", validation),
        ("fit: sample 200 characters after the epoch", sample),
        ("fit: grad_norms.png (matplotlib)", plot),
        (
            "fit: the rest (set-up, checkpoints, CSV, TensorBoard)",
            times["fit (all)"] - first - rest - validation - sample - plot,
        ),
    ]
    for label in ("evaluate validation and test (after fit)", "export (SavedModel, model.keras, card)", "summary"):
        rows.append((label, times.get(label, 0.0)))
    rows.append(("everything else (Python between the parts)", total - sum(v for _, v in rows)))
    print("| phase | seconds | share |\n|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / total:.0%} |")
    print(f"| **total in the process** | **{total:.2f}** | |")
    before = marks["fit: first step done"] - begin - first
    after = total - (marks["fit: last step done"] - begin)
    print(
        f"\nBefore the first step: {before + first:.1f} s (of which the first step's trace and compile {first:.1f} s); "
        f"training steps {rest:.1f} s; after the last step: {after:.1f} s."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-file", required=True, help="the corpus both commands train on")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved A/B rounds")
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: each library's own)")
    parser.add_argument("--phases", action="store_true", help="where the seqzoo command's seconds go")
    parser.add_argument("--write", action="store_true", help="also write the table into benchmarks/RESULTS.md")
    parser.add_argument("--phases-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text_file = str(Path(args.text_file).resolve())
    if args.phases_child:
        _phases_child(text_file, Path(args.out))
        return 0
    command = f"seqzoo train textgen --text-file {Path(text_file).name} --epochs 1"
    size = f"{Path(text_file).stat().st_size / 1000:.0f} kB of text"
    if args.phases:
        title = f"Where `{command}` spends its time ({size})"
        table, key, how = phases(text_file), "command-phases", "--phases"
    else:
        title = f"The whole command against a PyTorch script doing the same job ({size}"
        title += f", {args.threads} thread(s) each)" if args.threads else ")"
        threads = f" --threads {args.threads}" if args.threads else ""
        table = compare(text_file, args.rounds, args.threads)
        key, how = f"command-speed{'-threads' if args.threads else ''}", f"--rounds {args.rounds}{threads}"
    print(table)
    if args.write:
        from benchmarks.results import machine, write_section

        versions = ", ".join(f"{m} {importlib.metadata.version(m)}" for m in ("tensorflow", "keras", "torch"))
        body = (
            f"## {title}\n\n`python -m benchmarks.command_speed --text-file FILE {how}`; {machine()}; {versions}; "
            f"the machine shared with other work (load average in the table or below).\n\n{table}"
        )
        write_section(key, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
