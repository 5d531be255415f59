"""JapaneseVowels test accuracy of every zoo model over several seeds.

    python -m benchmarks.classify_quality                      # 6 models x 5 seeds
    python -m benchmarks.classify_quality --models bidirectional --seeds 3
    python -m benchmarks.classify_quality --quick              # smoke run, writes nothing

Each run is ``seqzoo train classify`` with the task's defaults and the per-model
settings below, without an export: ``run(Options(...))``, the command's own path.
The table goes to stdout and, between ``<!-- classify:start -->`` and
``<!-- classify:end -->``, into ``benchmarks/RESULTS.md`` (rewritten after every
model, so a cut-short benchmark keeps what it measured).
Anchors (Ismail Fawaz et al. 2019, UEA): FCN 99.3% (mean of 10 runs), InceptionTime 99.19%.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.results import RESULTS, machine, write_section
from tasks.options import Formatter, guarded
from zoo.config import MODEL_NAMES

TARGET = 0.993
# Options per model on top of the task's defaults (seqzoo train classify --help).
SETTINGS: dict[str, dict[str, object]] = {
    "lstm": {},
    "stacked_lstm": {},
    "gru": {},
    "bidirectional": {"cell": "gru"},
    "simple_rnn": {},
    "unshared_rnn": {},
}
# The settings the section names as the task's defaults, in the order RESULTS.md shows them.
DEFAULT_FIELDS = (
    "lr_schedule",
    "pooling",
    "noise",
    "model",
    "units",
    "dropout",
    "epochs",
    "batch_size",
    "learning_rate",
)


def flags(settings: dict[str, object]) -> str:
    """``settings`` as the command line's flags (the table shows what to type)."""
    return " ".join(f"--{name.replace('_', '-')} {value}" for name, value in settings.items())


def run_one(model: str, seed: int, quick: bool, runs: str) -> dict:
    from tasks import sequence_classification as classify

    fields = {"model": model, "seed": seed, "export": False, "runs": runs, **SETTINGS[model]}
    options = classify.Options.quick(**fields) if quick else classify.Options(**fields)
    start = time.perf_counter()
    result = classify.run(options, verbose=0)
    return {
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        "seconds": time.perf_counter() - start,
        "params": result.details["params"],
        "flags": flags(SETTINGS[model]),
    }


def table(rows: dict[str, list[dict]], seeds: int) -> str:
    lines = [
        "| model | flags | params | runs | test accuracy mean ± std | min | max | macro-F1 mean | s/run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, runs in rows.items():
        acc = np.array([r["accuracy"] for r in runs])
        flags = runs[0]["flags"] or "(defaults)"
        lines.append(
            f"| {model} | `{flags}` | {runs[0]['params']:,} | {len(runs)}/{seeds} | {acc.mean():.2%} ± {acc.std():.2%} "
            f"| {acc.min():.2%} | {acc.max():.2%} | {np.mean([r['macro_f1'] for r in runs]):.2%} "
            f"| {np.mean([r['seconds'] for r in runs]):.0f} |"
        )
    return "\n".join(lines)


def section(rows: dict[str, list[dict]], seeds: int, load: tuple[float, float]) -> str:
    from tasks.sequence_classification import Options

    best = max(rows, key=lambda m: np.mean([r["accuracy"] for r in rows[m]]), default=None)
    verdict = ""
    if best is not None:
        mean = np.mean([r["accuracy"] for r in rows[best]])
        verdict = (
            f"Best: **{best}** {mean:.2%} mean test accuracy -- the issue's target "
            f"(>= {TARGET:.1%}) is {'met' if mean >= TARGET else 'NOT met'}."
        )
    per_seed = "; ".join(f"{m}: " + ", ".join(f"{r['accuracy']:.2%}" for r in runs) for m, runs in rows.items())
    defaults = ", ".join(f"{k}={getattr(Options(), k)}" for k in DEFAULT_FIELDS)
    return "\n".join(
        [
            "## Sequence classification: JapaneseVowels (UEA), test accuracy over seeds",
            "",
            f"`python -m benchmarks.classify_quality --seeds {seeds}` on {machine()}; load average "
            f"{load[0]:.1f} at the start, {load[1]:.1f} at the end (the machine was shared, so seconds are "
            f"upper bounds). 270 training series (10% held out, stratified, for validation), 370 test series. "
            f"Task defaults: {defaults}. Anchors: FCN 99.3% (mean of 10 runs), InceptionTime 99.19%.",
            "",
            table(rows, seeds),
            "",
            verdict,
            "",
            f"Per seed (seeds 0..{seeds - 1}): {per_seed}.",
        ]
    )


def build_parser(prog: str = "python -m benchmarks.classify_quality") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=Formatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), help="zoo models to benchmark")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per model (0..N-1)")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file whose classify section is rewritten")
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch, 1 seed; writes no results")
    return parser


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    for model in args.models:
        if model not in SETTINGS:
            raise ValueError(f"Unknown model {model!r}. Valid models: {', '.join(MODEL_NAMES)}")
    if args.seeds <= 0:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    seeds = 1 if args.quick else args.seeds
    rows: dict[str, list[dict]] = {}
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="classify-bench-") as runs:
        bar = tqdm(total=len(args.models) * seeds, desc="classify benchmark", unit="run")
        for model in args.models:
            for seed in range(seeds):
                r = run_one(model, seed, args.quick, runs)
                rows.setdefault(model, []).append(r)
                bar.set_postfix_str(f"{model} seed {seed}: {r['accuracy']:.2%} in {r['seconds']:.0f} s")
                bar.update()
            if not args.quick:
                write_section("classify", section(rows, seeds, (load_start, os.getloadavg()[0])), Path(args.results))
        bar.close()
    print(table(rows, seeds))
    if not args.quick:
        print(f"\nwrote the classify section of {args.results}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(parser.prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
