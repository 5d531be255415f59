"""What every study shares: seeds, statistics, raw-result files, reports.

A study is a module with ``NAME``, ``TITLE``, ``add_arguments(parser)``,
``run(args, out) -> dict`` (trains, measures, writes plots, returns the raw
results, JSON-serializable) and ``render(results) -> str`` (the Markdown
report). The report is rendered *only* from the raw results, so every number
and every sentence in it can be re-derived from ``results.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_ROOT = Path(__file__).resolve().parent / "results"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the half-width of a t-based confidence interval."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci95": half, "n": n}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value (nan with fewer than 2 values a side)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.allclose(np.std(a), 0) and np.allclose(np.std(b), 0):
        return 0.0 if not np.isclose(np.mean(a), np.mean(b)) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_ci(summary: dict[str, float], digits: int = 3) -> str:
    if summary["n"] < 2:
        return fmt(summary["mean"], digits)
    return f"{fmt(summary['mean'], digits)} ± {fmt(summary['ci95'], digits)}"


def verdict(
    a_name: str,
    a: Sequence[float],
    b_name: str,
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    what: str = "score",
    alpha: float = 0.05,
) -> str:
    """A sentence chosen by the numbers: which is better, and whether the evidence holds."""
    ma, mb, p = float(np.mean(a)), float(np.mean(b)), welch_p(a, b)
    (better, mbest), (worse, mworst) = sorted(
        [(a_name, ma), (b_name, mb)], key=lambda t: t[1], reverse=higher_is_better
    )
    n = min(len(a), len(b))
    means = f"{fmt(mbest)} vs {fmt(mworst)}"
    if math.isnan(p):
        return (
            f"{better} has the better mean {what} ({means}), but with one run each there is no test of the difference."
        )
    if p < alpha:
        return f"{better} beats {worse} on {what} ({means}, Welch p = {p:.2g}, {n} seeds each)."
    return (
        f"{better} has the better mean {what} ({means}), but the difference is not significant "
        f"(Welch p = {p:.2g}, {n} seeds each): the evidence is weak."
    )


def seeds_for(args, what: str = "") -> Iterable[int]:
    """Seeds 0..``args.seeds``-1 with a progress bar on stderr (``what``: the setting they repeat)."""
    from tqdm import tqdm

    desc = " ".join(filter(None, [getattr(args, "name", None), what, "seeds"]))
    return tqdm(range(args.seeds), desc=desc, unit="seed")


def write_raw(out: Path, results: dict[str, Any], rows: Iterable[dict[str, Any]] | None = None) -> None:
    """``results.json`` (everything the report uses) and ``results.csv`` (one row per run)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    rows = list(rows or [])
    if rows:
        import csv

        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


def load_raw(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / "results.json").read_text())


def savefig(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def train_model(
    config,
    x,
    y,
    *,
    head: str,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    validation=None,
    verbose: int = 0,
    **training_kwargs,
):
    """Build ``Input -> zoo body -> head`` and train it on the one compile + fit path.

    ``head`` is ``"binary"`` (sigmoid, accuracy), ``"classes:K"`` (softmax over K) or
    ``"regression"`` (linear, MSE). Returns ``(model, history)``.
    """
    import keras

    import zoo
    from zoo import training

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x.shape[1:])
    h = zoo.apply(config, inputs)
    if head == "binary":
        outputs, loss, metrics = keras.layers.Dense(1, activation="sigmoid")(h), "binary_crossentropy", ["accuracy"]
    elif head.startswith("classes:"):
        k = int(head.split(":")[1])
        outputs, loss, metrics = (
            keras.layers.Dense(k, activation="softmax")(h),
            "sparse_categorical_crossentropy",
            ["accuracy"],
        )
    elif head == "regression":
        outputs, loss, metrics = keras.layers.Dense(1)(h), "mse", []
    else:
        raise ValueError(f"Unknown head {head!r}; expected binary, classes:K or regression")
    model = zoo.SeqModel(inputs, outputs)
    training.compile_model(model, loss=loss, metrics=metrics, learning_rate=learning_rate, **training_kwargs)
    history = training.fit(model, dataset(x, y, batch_size, seed), validation, epochs=epochs, verbose=verbose)
    return model, history


def dataset(x, y, batch_size: int, seed: int):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size)


def accuracy(model, x, y) -> float:
    p = model.predict(x, verbose=0, batch_size=512)
    pred = (p[:, 0] > 0.5).astype(int) if p.shape[-1] == 1 else p.argmax(-1)
    return float((pred == np.asarray(y).reshape(-1)).mean())
