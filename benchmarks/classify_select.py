"""Choose a classify recipe by cross-validation on the TRAINING file only.

    python -m benchmarks.classify_select                          # JapaneseVowels, 5 folds, every recipe
    python -m benchmarks.classify_select --recipes bigru_mean conv_bigru_mean --folds 3 --jobs 2
    python -m benchmarks.classify_select --recipes bilstm128_mean lstmfcn_resample --repeats 3   # finalists
    python -m benchmarks.classify_select --quick                  # smoke run, writes nothing

The training file is cut (stratified) into ``--folds`` folds; each recipe trains on all
folds but one and is scored on the held-out one, for every fold. ``--repeats R`` does that
on R different cuts (split r shuffles with seed r), for finalists that one cut cannot
tell apart. The fold files are
written from the training file's own lines, so the test file is never opened (its path is
not even looked up): the test set cannot steer the choice. The chosen recipe has the best
mean held-out accuracy over every fold of every split it was asked for, ties broken by the
lower mean held-out log loss; it becomes
``seqzoo train classify --preset best`` and ``benchmarks.classify_quality --preset best``
then reads the test set once per final model.

Every (recipe, split, fold) result is appended to ``benchmarks/selection/<dataset>.jsonl`` as it
finishes, so a stopped search resumes where it was; ``--write`` puts the table into
``benchmarks/RESULTS.md`` (``classify-selection``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.pool import run_all
from benchmarks.results import RESULTS, machine, write_section
from studies.stats import sample_std
from tasks.options import Formatter, guarded

SELECTION = Path(__file__).resolve().parent / "selection"

# Settings every recipe shares unless it says otherwise: no validation split inside a fold
# (the held-out fold is the validation), a fixed number of epochs, cosine decay.
BASE: dict[str, object] = {
    "val_fraction": 0.0,
    "epochs": 80,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "lr_schedule": "cosine",
    "dropout": 0.2,
    "units": 64,
}
# The third round's recipe, from the literature rather than the folds: the published FCN's
# convolutional branch beside the second round's best (LSTM-FCN), on FCN's preprocessing (every
# series stretched onto the longest training series' length), trained longer at FCN's learning rate.
LSTMFCN: dict[str, object] = {"model": "bidirectional", "cell": "lstm", "pooling": "mean", "noise": 0.2, "units": 128,
                              "dropout": 0.3, "fcn_filters": 128, "epochs": 150, "learning_rate": 1e-3,
                              "resample": True}  # fmt: skip
# The sixth round's winner, which the seventh and eighth rounds vary: 8 cells, dropout 0.5.
LSTMFCN_U8: dict[str, object] = {**LSTMFCN, "units": 8, "dropout": 0.5}
# The candidates: the task's recurrent models, mean pooling and input noise, and a Conv1D
# front end (LSTM-FCN style) before the recurrent body.
RECIPES: dict[str, dict[str, object]] = {
    "gru_last": {"model": "gru", "lr_schedule": "constant", "epochs": 60},
    "bigru_last": {"model": "bidirectional", "cell": "gru", "lr_schedule": "constant", "epochs": 60},
    "bigru_mean": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.1},
    "bilstm_mean": {"model": "bidirectional", "cell": "lstm", "pooling": "mean", "noise": 0.1},
    "bigru128_mean": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.2, "units": 128,
                      "dropout": 0.3},
    "conv_gru_mean": {"model": "gru", "pooling": "mean", "noise": 0.1, "conv_filters": 64},
    "conv_bigru_mean": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.1, "conv_filters": 64},
    "conv_bilstm_mean": {"model": "bidirectional", "cell": "lstm", "pooling": "mean", "noise": 0.1,
                         "conv_filters": 64},
    "conv128_bigru128_mean": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.2,
                              "conv_filters": 128, "units": 128, "dropout": 0.3},
    # Second round, added after the first showed wider, more regularized models ahead (held-out folds only).
    "bigru256_mean": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.2, "units": 256,
                      "dropout": 0.3},
    "bigru128_mean_strong": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.3,
                             "units": 128, "dropout": 0.4},
    "bigru128_mean_150": {"model": "bidirectional", "cell": "gru", "pooling": "mean", "noise": 0.2, "units": 128,
                          "dropout": 0.3, "epochs": 150},
    "bilstm128_mean": {"model": "bidirectional", "cell": "lstm", "pooling": "mean", "noise": 0.2, "units": 128,
                       "dropout": 0.3},
    # Third round, from the literature rather than the folds (LSTMFCN above); later rounds vary it.
    "lstmfcn_resample": LSTMFCN,
    # Fourth round, again from the literature: the published FCN trains 2,000 epochs; this is the third
    # round's winner at four times its epochs (what one session's 2 cores allow), on all three cuts.
    "lstmfcn_resample_600": {**LSTMFCN, "epochs": 600},
    # Fifth round, after the fourth lost on three cuts: the third round's winner with one regulariser
    # moved toward the literature's settings: less input noise (the published FCN trains on clean
    # series) or more dropout after the recurrent body (LSTM-FCN's is 0.8), on all three cuts.
    "lstmfcn_resample_noise01": {**LSTMFCN, "noise": 0.1},
    "lstmfcn_resample_drop05": {**LSTMFCN, "dropout": 0.5},
    # Sixth round, after dropout 0.5 won the fifth: further toward LSTM-FCN's settings, its dropout
    # (0.8) or its smallest recurrent body (8 cells, leaving the work to the convolutional branch).
    "lstmfcn_resample_drop08": {**LSTMFCN, "dropout": 0.8},
    "lstmfcn_resample_u8": LSTMFCN_U8,
    # Seventh round, around the sixth's winner: a smaller or larger recurrent body (4 or 16 cells),
    # LSTM-FCN's own pairing of 8 cells with dropout 0.8, or twice the epochs for the smaller model.
    "lstmfcn_resample_u4": {**LSTMFCN_U8, "units": 4},
    "lstmfcn_resample_u16": {**LSTMFCN_U8, "units": 16},
    "lstmfcn_resample_u8_drop08": {**LSTMFCN_U8, "dropout": 0.8},
    "lstmfcn_resample_u8_300": {**LSTMFCN_U8, "epochs": 300},
    # Eighth round, from the literature again: MLSTM-FCN's squeeze-and-excitation in the convolutional
    # branch, on the seventh round's two leaders (tied at 3 held-out errors; MLSTM-FCN's own is 8 cells
    # with dropout 0.8).
    "lstmfcn_resample_u8_se": {**LSTMFCN_U8, "squeeze_excite": True},
    "lstmfcn_resample_u8_drop08_se": {**LSTMFCN_U8, "dropout": 0.8, "squeeze_excite": True},
    # Ninth round, from the literature: MLSTM-FCN's dimension shuffle (the recurrent body steps over the
    # channels, each step reading a channel's whole resampled series) on the eighth round's preset.
    "lstmfcn_resample_u8_drop08_shuffle": {**LSTMFCN_U8, "dropout": 0.8, "dimension_shuffle": True},
    # Tenth round: knowledge distillation of three of the preset's seeds into one model (temperature 4,
    # the literature's usual choice, not tuned). The idea came from a test-set figure the issue asks to
    # report (the preset's seed ensemble beats its single seeds); whether it helps is decided here.
    "lstmfcn_resample_u8_drop08_distill3": {**LSTMFCN_U8, "dropout": 0.8, "teachers": 3},
}  # fmt: skip


def recipe_options(name: str) -> dict[str, object]:
    """The ``classify.Options`` fields of recipe ``name`` (``BASE`` under its own settings)."""
    return {**BASE, **RECIPES[name]}


# ----------------------------------------------------------------------------- folds


def split_ts(path: Path) -> tuple[list[str], list[str], list[str]]:
    """A ``.ts`` file as (header lines up to ``@data``, one line per case, the cases' labels).

    The label is what follows the last ``:`` of a case's line (the format's class label), split as
    the task's reader splits it.
    """
    from tasks.sequence_classification.data import split_ts_text

    parts = split_ts_text(path.read_text(encoding="utf-8"))
    if parts is None:
        raise ValueError(f"{path}: no '@data' line; expected a UEA/sktime .ts file")
    return parts


def write_folds(train_path: Path, folds: int, out: Path, seed: int = 0) -> list[tuple[Path, Path]]:
    """``folds`` stratified (fit, held-out) pairs of ``.ts`` files cut from ``train_path`` alone."""
    from sklearn.model_selection import StratifiedKFold

    header, cases, labels = split_ts(train_path)
    pairs = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fit_file, held_file = out / f"fold{k}_fit.ts", out / f"fold{k}_heldout.ts"
        fit_file.write_text("\n".join(header + [cases[i] for i in sorted(fit)]) + "\n", encoding="utf-8")
        held_file.write_text("\n".join(header + [cases[i] for i in sorted(held)]) + "\n", encoding="utf-8")
        pairs.append((fit_file, held_file))
    return pairs


# ----------------------------------------------------------------------------- one fold


def score_fold(recipe: str, split: int, fold: int, fit_file: str, held_file: str, quick: bool, seed: int) -> dict:
    """Train ``recipe`` on ``fit_file`` and score it on ``held_file`` (accuracy and log loss)."""
    from tasks import sequence_classification as classify

    with tempfile.TemporaryDirectory(prefix="select-") as runs:
        fields = {**recipe_options(recipe), "ts_train": fit_file, "ts_test": held_file, "seed": seed}
        fields |= {"export": False, "monitor": False, "runs": runs}
        options = classify.Options.quick(**{**fields, "epochs": 1}) if quick else classify.Options(**fields)
        result = classify.run(options, verbose=0)
        probs, labels = classify.predict(result.model, result.details["data"].test)
    log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))
    return {
        "recipe": recipe,
        "settings": recipe_options(recipe),
        "split": split,
        "fold": fold,
        "accuracy": result.metrics["accuracy"],
        "log_loss": log_loss,
    }


# ----------------------------------------------------------------------------- the search


def load_done(store: Path) -> list[dict]:
    """The stored results that still hold: rows written before splits existed are split 0's, and a
    row whose recipe has changed since it ran (its stored settings differ from ``RECIPES``) is left
    out, so that recipe's folds run again. Rows written before settings were stored are kept."""
    if not store.exists():
        return []
    rows = [{"split": 0, **json.loads(line)} for line in store.read_text().splitlines() if line.strip()]

    def still_holds(row: dict) -> bool:
        if row["recipe"] not in RECIPES:
            return True
        current = recipe_options(row["recipe"])
        return row.get("settings", current) == current

    return [r for r in rows if still_holds(r)]


def summarize(rows: list[dict], folds: int, repeats: int = 1) -> list[dict]:
    """Per recipe: mean and std of held-out accuracy and log loss over its folds of splits
    ``0 .. repeats - 1``, best first; a recipe missing any of those folds sorts last."""
    out = []
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe and r["split"] < repeats]
        if not mine:
            continue
        acc, loss = np.array([r["accuracy"] for r in mine]), np.array([r["log_loss"] for r in mine])
        held_out = {(r["split"], r["fold"]) for r in mine}
        out.append(
            {
                "recipe": recipe,
                "folds": len(mine),
                "complete": held_out == {(s, k) for s in range(repeats) for k in range(folds)},
                "accuracy": float(acc.mean()),
                "accuracy_std": sample_std(acc),
                "log_loss": float(loss.mean()),
            }
        )
    return sorted(out, key=lambda s: (not s["complete"], -round(s["accuracy"], 6), s["log_loss"]))


def table(summary: list[dict]) -> str:
    lines = [
        "| recipe | settings | held-out folds | held-out accuracy mean ± std | held-out log loss |",
        "|---|---|---:|---:|---:|",
    ]
    for s in summary:
        settings = ", ".join(f"{k}={v}" for k, v in RECIPES.get(s["recipe"], {}).items())
        lines.append(
            f"| {s['recipe']} | {settings} | {s['folds']} | {s['accuracy']:.2%} ± {s['accuracy_std']:.2%} "
            f"| {s['log_loss']:.3f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tasks.sequence_classification import data as D

    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        raise ValueError(f"Unknown recipes {unknown}; --recipes takes any of: {', '.join(RECIPES)}")
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    train_path = Path(args.train) if args.train else D.bundled_paths(args.dataset)[0]
    name = train_path.name.removesuffix("_TRAIN.ts").removesuffix(".ts")
    store = Path(args.store) if args.store else SELECTION / f"{name}.jsonl"
    done = [] if args.quick else [r for r in load_done(store) if r["recipe"] in args.recipes]
    finished = {(r["recipe"], r["split"], r["fold"]) for r in done}
    with tempfile.TemporaryDirectory(prefix="folds-") as tmp:
        pairs = {}  # split -> its (fit, held-out) files
        for split in range(args.repeats):
            (Path(tmp) / str(split)).mkdir()
            pairs[split] = write_folds(train_path, args.folds, Path(tmp) / str(split), seed=split)
        todo = [
            (r, s, k)
            for r in args.recipes
            for s in range(args.repeats)
            for k in range(args.folds)
            if (r, s, k) not in finished
        ]
        bar = tqdm(total=len(todo), desc=f"select on {name}", unit="fold")
        rows = list(done)
        # Split 0 trains fold k with seed k (as before splits existed); split s with seed s * folds + k.
        jobs = [(r, s, k, str(pairs[s][k][0]), str(pairs[s][k][1]), args.quick, s * args.folds + k) for r, s, k in todo]
        for row in run_all(score_fold, jobs, args.jobs):
            rows.append(row)
            if not args.quick:
                store.parent.mkdir(exist_ok=True)
                with open(store, "a") as f:
                    f.write(json.dumps(row) + "\n")
            bar.set_postfix_str(f"{row['recipe']} split {row['split']} fold {row['fold']}: {row['accuracy']:.2%}")
            bar.update()
        bar.close()
    summary = summarize(rows, args.folds, args.repeats)
    print(table(summary))
    if summary and summary[0]["complete"]:
        print(f"\nchosen: {summary[0]['recipe']} ({summary[0]['accuracy']:.2%} mean held-out accuracy)")
    if args.write and not args.quick:
        first = summarize(load_done(store), args.folds)  # every stored recipe on the first cut
        body = [
            f"## Sequence classification: recipe selection on {name}'s training file",
            "",
            f"`python -m benchmarks.classify_select --dataset {name} --folds {args.folds} --write`"
            + (
                f", then `--recipes {' '.join(args.recipes)} --repeats {args.repeats} --write`"
                if args.repeats > 1
                else ""
            )
            + f" on {machine()}. "
            f"{args.folds}-fold stratified cross-validation inside the training file "
            f"({len(split_ts(train_path)[1])} series); the test file is never opened. Shared settings: "
            + ", ".join(f"{k}={v}" for k, v in BASE.items())
            + " (a recipe's own settings win).",
            "",
            f"Every recipe on the first cut into {args.folds} folds:",
            "",
            table(first),
        ]
        if args.repeats > 1:
            body += ["", f"The finalists on {args.repeats} cuts ({args.repeats * args.folds} held-out folds):", ""]
            body.append(table(summary))
        body += ["", f"Chosen: **{summary[0]['recipe']}** (best mean held-out accuracy, ties to the lower log loss)."]
        write_section("classify-selection", "\n".join(body), Path(args.results))
    return 0


def build_parser(prog: str = "python -m benchmarks.classify_select") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=Formatter)
    parser.add_argument("--dataset", default="JapaneseVowels", help="a bundled UEA/UCR set (its training file only)")
    parser.add_argument("--train", default=None, help="a training .ts file instead of --dataset")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="recipes to compare")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--repeats", type=int, default=1, help="cuts into folds (split r shuffled with seed r)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes, one core each")
    parser.add_argument("--store", default=None, help="results file (default: benchmarks/selection/<dataset>.jsonl)")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file for --write")
    parser.add_argument("--write", action="store_true", help="write the table into --results")
    parser.add_argument("--quick", action="store_true", help="1 epoch on small data, stores and writes nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(parser.prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
