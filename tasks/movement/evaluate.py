"""Scoring the movement task against baselines on the same test days, honestly.

Baselines: always the train period's majority class (always-up on stock
indices), persistence (tomorrow repeats today's direction), and logistic
regression on the very same scaled feature windows. A one-sided binomial test
asks whether the model's accuracy beats the majority rate; the report says
plainly when it does not.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

ALPHA = 0.05
MODEL = "model"
MAJORITY = "train majority"
PERSISTENCE = "persistence"
LOGISTIC = "logistic regression"


@keras.saving.register_keras_serializable(package="seqzoo")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean of the recall on up days and on down days (P(up) > ``threshold`` is "up").

    Always predicting one class scores 0.5, whatever the class balance. A
    class absent from the data is left out of the mean.
    """

    def __init__(self, threshold: float = 0.5, name: str = "balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.counts = self.add_variable(shape=(4,), initializer="zeros", name="counts")  # (true, predicted) 00 01 10 11

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        y_pred = ops.reshape(ops.cast(y_pred > self.threshold, "int32"), (-1,))
        weight = (
            ops.ones_like(y_true, "float32")
            if sample_weight is None
            else ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        )
        cells = ops.one_hot(2 * y_true + y_pred, 4) * weight[:, None]
        self.counts.assign_add(ops.sum(cells, axis=0))

    def result(self):
        counts = ops.reshape(self.counts, (2, 2))
        per_class = ops.sum(counts, axis=1)
        recall = ops.divide_no_nan(ops.diagonal(counts), per_class)
        present = ops.sum(ops.cast(per_class > 0, "float32"))
        return ops.sum(recall) / ops.maximum(present, 1.0)

    def reset_state(self):
        self.counts.assign(ops.zeros((4,)))

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred))
        if len(set(y_true)) > 1
        else float((y_true == y_pred).mean()),
        "predicted_up": float(y_pred.mean()),
    }


def majority_class(y_train: np.ndarray) -> str:
    """ "up" when the training period has at least as many up days as down days."""
    return "up" if np.mean(y_train) >= 0.5 else "down"


def label(name: str, majority: str) -> str:
    """Display name: the majority baseline says which class it always answers."""
    if name != MAJORITY:
        return name
    if majority in ("up", "down"):
        return f"always-{majority} ({MAJORITY})"
    return f"{MAJORITY} ({majority})" if majority else MAJORITY


def baseline_predictions(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    today_up: np.ndarray,
    *,
    class_weight: str | None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Majority class, persistence and logistic regression on the same windows and test days."""
    from sklearn.linear_model import LogisticRegression

    up = int(majority_class(y_train) == "up")
    logistic = LogisticRegression(max_iter=2000, class_weight=class_weight, random_state=seed)
    logistic.fit(x_train.reshape(len(x_train), -1), y_train)
    return {
        MAJORITY: np.full(len(x_test), up, dtype=int),
        PERSISTENCE: today_up.astype(int),
        LOGISTIC: logistic.predict(x_test.reshape(len(x_test), -1)).astype(int),
    }


def skill_test(y_true: np.ndarray, y_pred: np.ndarray, baseline_rate: float) -> dict[str, float | bool]:
    """One-sided binomial test: is the accuracy above ``baseline_rate`` (the majority class's accuracy)?"""
    from scipy.stats import binomtest

    correct, n = int((np.asarray(y_true) == np.asarray(y_pred)).sum()), len(y_true)
    p_value = float(binomtest(correct, n, p=float(baseline_rate), alternative="greater").pvalue)
    return {
        "correct": correct,
        "n": n,
        "baseline_rate": float(baseline_rate),
        "p_value": p_value,
        "skill": p_value < ALPHA,
    }


def verdict(test: dict, baseline: str) -> str:
    acc = test["correct"] / test["n"]
    base = f"{baseline} {test['baseline_rate']:.3f}"
    if test["skill"]:
        return (
            f"SKILL: accuracy {acc:.3f} beats {base} on {test['n']} test days "
            f"(one-sided binomial p = {test['p_value']:.3g} < {ALPHA})."
        )
    return (
        f"NO SKILL: accuracy {acc:.3f} vs {base} on {test['n']} test days; one-sided binomial "
        f"p = {test['p_value']:.3g} >= {ALPHA}. The model is not shown to predict the direction better than "
        f"always answering the train period's majority class; do not trade on it."
    )


def evaluate(y_true: np.ndarray, predictions: dict[str, np.ndarray], majority: str) -> dict:
    """Scores of every predictor and the model's skill test against the majority baseline.

    ``majority`` is the class the majority baseline answers ("up"/"down"), or a
    note such as "per fold" when pooled over folds.
    """
    table = {name: scores(y_true, pred) for name, pred in predictions.items()}
    test = skill_test(y_true, predictions[MODEL], table[MAJORITY]["accuracy"])
    return {
        "days": len(y_true),
        "up_fraction": float(np.mean(y_true)),
        "majority": majority,
        "scores": table,
        "binomial_test": test,
        "verdict": verdict(test, label(MAJORITY, majority)),
    }


def strategy_returns(next_log_return: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Total return of long/flat (long when "up" is predicted, else cash) vs buy-and-hold; no costs."""
    return {
        "long_flat": float(np.expm1(np.sum(next_log_return * pred))),
        "buy_and_hold": float(np.expm1(np.sum(next_log_return))),
    }


def table(evaluation: dict) -> str:
    rows = ["| predictor | accuracy | balanced accuracy | predicted up |", "|---|---:|---:|---:|"]
    for name, s in evaluation["scores"].items():
        rows.append(
            f"| {label(name, evaluation['majority'])} | {s['accuracy']:.3f} | {s['balanced_accuracy']:.3f} | {s['predicted_up']:.2f} |"
        )
    return "\n".join(rows)


def _figure():
    """A wide time-axis figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(11, 4.5))


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_directions(dates, close: np.ndarray, pred: np.ndarray, path: Path, title: str) -> Path:
    """Test-period price with each day's predicted direction for the next day."""
    fig, ax = _figure()
    ax.plot(dates, close, color="0.4", lw=1, label="close")
    up = pred.astype(bool)
    ax.scatter(dates[up], close[up], marker="^", s=14, color="tab:green", label="predicted up next day")
    ax.scatter(dates[~up], close[~up], marker="v", s=14, color="tab:red", label="predicted down next day")
    ax.set(title=title, ylabel="price")
    return _save(fig, ax, path)


def plot_strategy(dates, next_log_return: np.ndarray, preds: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Growth of 1 invested: long/flat on each predictor's calls vs buy-and-hold (no transaction costs)."""
    fig, ax = _figure()
    ax.plot(dates, np.exp(np.cumsum(next_log_return)), color="black", lw=1.5, label="buy-and-hold")
    for name, pred in preds.items():
        ax.plot(dates, np.exp(np.cumsum(next_log_return * pred)), lw=1, label=f"long/flat: {name}")
    ax.set(title=title + " (no transaction costs)", ylabel="growth of 1")
    return _save(fig, ax, path)
