"""Test-set metrics for a classifier: accuracy, macro-F1, confusion matrix (text and PNG)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, the confusion matrix (rows: true, columns: predicted) and the majority baseline."""
    from sklearn.metrics import confusion_matrix, f1_score

    labels = np.arange(n_classes)
    majority = np.bincount(y_true, minlength=n_classes).max() / max(len(y_true), 1)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "majority_baseline_accuracy": float(majority),
        "n_test": int(len(y_true)),
    }


def format_confusion(matrix: list[list[int]], names: list[str], max_classes: int = 20) -> str:
    """The confusion matrix as a text table (rows: true class, columns: predicted)."""
    if len(names) > max_classes:
        return f"(confusion matrix of {len(names)} classes: see the PNG)"
    width = max(4, *(len(n) for n in names), *(len(str(v)) for row in matrix for v in row)) + 1
    lines = ["true\\pred".ljust(10) + "".join(n.rjust(width) for n in names)]
    lines += [
        n[:10].ljust(10) + "".join(str(v).rjust(width) for v in row) for n, row in zip(names, matrix, strict=True)
    ]
    return "\n".join(lines)


def confusion_png(matrix: list[list[int]], names: list[str], title: str) -> bytes:
    """A PNG heat map of the confusion matrix with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    size = min(12, 2 + 0.5 * len(names))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(names) <= 30:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
