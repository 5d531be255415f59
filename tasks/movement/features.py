"""Features, labels and chronological splits, defined so that nothing can see the future.

Day ``t``'s features use rows ``t`` and ``t - 1`` only (:class:`PriceFeatures`,
Keras ops, so the same code runs in training and inside the SavedModel).
A sample at day ``t`` is the window of features of days ``t - window + 1 .. t``
(raw rows ``t - window .. t``); its label is 1 ("up") when ``close[t + 1] >
close[t]`` and 0 otherwise: an unchanged close (a tie) counts as "not up".
The scaler is fitted on the features of the days inside training windows only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

# name: (raw columns it needs, definition); the order is the feature order.
FEATURES = {
    "log_return": (("close",), "log(close[t] / close[t-1])"),
    "log_range": (("high", "low"), "log(high[t] / low[t])"),
    "log_body": (("open", "close"), "log(close[t] / open[t])"),
    "volume_change": (("volume",), "log1p(volume[t]) - log1p(volume[t-1])"),
}
LABEL = "1 (up) if close[t+1] > close[t], else 0 (down or unchanged: ties count as not up)"


def feature_names(columns: tuple[str, ...] | list[str]) -> list[str]:
    """The features the raw ``columns`` allow, in ``FEATURES`` order."""
    return [name for name, (needs, _) in FEATURES.items() if set(needs) <= set(columns)]


@keras.saving.register_keras_serializable(package="seqzoo")
class PriceFeatures(keras.layers.Layer):
    """Raw daily rows (batch, T + 1, len(columns)) -> per-day features (batch, T, F).

    Row ``i + 1``'s features use rows ``i`` and ``i + 1`` only. Prices must be
    positive; volume non-negative.
    """

    def __init__(self, columns, **kwargs):
        super().__init__(**kwargs)
        self.columns = tuple(columns)
        if "close" not in self.columns:
            raise ValueError(f"PriceFeatures needs a 'close' column, got columns {self.columns}")
        self.feature_names = feature_names(self.columns)

    def call(self, rows):
        rows = ops.cast(rows, "float32")
        col = {name: rows[..., i] for i, name in enumerate(self.columns)}
        close, prev_close = col["close"][:, 1:], col["close"][:, :-1]
        computed = {"log_return": lambda: ops.log(close / prev_close)}
        computed["log_range"] = lambda: ops.log(col["high"][:, 1:] / col["low"][:, 1:])
        computed["log_body"] = lambda: ops.log(close / col["open"][:, 1:])
        # log1p(v[t]) - log1p(v[t-1]) as one log of a ratio: float32 keeps ~7 digits of the ratio, not of log1p(1e9).
        computed["volume_change"] = lambda: ops.log((1.0 + col["volume"][:, 1:]) / (1.0 + col["volume"][:, :-1]))
        return ops.stack([computed[name]() for name in self.feature_names], axis=-1)  # (batch, T, F)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] - 1
        return (input_shape[0], steps, len(self.feature_names))

    def get_config(self):
        return {**super().get_config(), "columns": list(self.columns)}


def series_features(frame) -> np.ndarray:
    """Unscaled features of days 1..N-1 of a whole price frame: (N - 1, F)."""
    rows = frame.to_numpy(np.float32)[None]  # (1, N, C)
    return keras.ops.convert_to_numpy(PriceFeatures(tuple(frame.columns))(rows))[0]


def labels(close: np.ndarray) -> np.ndarray:
    """``y[t] = close[t+1] > close[t]`` for t = 0..N-2 (ties are 0)."""
    return (close[1:] > close[:-1]).astype(np.int32)


def windows(values: np.ndarray, length: int) -> np.ndarray:
    """All windows of ``length`` consecutive rows: (N - length + 1, length, ...)."""
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)  # (n, ..., length)
    return np.moveaxis(view, -1, 1)


def num_samples(num_rows: int, window: int) -> int:
    """Labelled samples in ``num_rows`` daily rows: days ``window .. N - 2``."""
    return num_rows - 1 - window


def normalizer(features: np.ndarray, window: int, num_train: int) -> keras.layers.Normalization:
    """Standardization fitted on the features inside the first ``num_train`` windows only.

    Sample ``j`` covers feature rows ``j .. j + window - 1``, so the training
    samples see rows ``0 .. num_train + window - 2``.
    """
    fit_on = features[: num_train + window - 1]
    mean, var = fit_on.mean(axis=0), fit_on.var(axis=0)
    return keras.layers.Normalization(mean=mean, variance=np.where(var > 0, var, 1.0), name="scaling")


@dataclass(frozen=True)
class SplitIndex:
    """Chronological sample ranges: train ``[0, train)``, val ``[train, val)``, test ``[val, test)``."""

    train: int
    val: int
    test: int

    def ranges(self) -> dict[str, slice]:
        return {"train": slice(0, self.train), "val": slice(self.train, self.val), "test": slice(self.val, self.test)}


MIN_SAMPLES = {"train": 20, "val": 5, "test": 10}


def chronological_split(n: int, val_fraction: float, test_fraction: float, *, window: int) -> SplitIndex:
    """Train, then validation, then test, in time order; each large enough to mean something."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"Received --{name.replace('_', '-')} {value}, expected a fraction in (0, 1)")
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    split = SplitIndex(n - n_test - n_val, n - n_test, n)
    sizes = {"train": split.train, "val": n_val, "test": n_test}
    if n <= 0 or any(sizes[k] < MIN_SAMPLES[k] for k in sizes):
        train_fraction = max(1 - val_fraction - test_fraction, 1e-9)
        need = math.ceil(max(MIN_SAMPLES["test"] / test_fraction, MIN_SAMPLES["val"] / val_fraction, MIN_SAMPLES["train"] / train_fraction))
        got = f"{n} labelled days split into {sizes}" if n > 0 else "no labelled days"
        raise ValueError(
            f"Too few rows: {n + window + 1} daily rows with --window {window} give {got}, but the split needs "
            f"at least {MIN_SAMPLES} days, i.e. about {need + window + 1} rows with these fractions. "
            "Provide a longer history or lower --window"
        )
    return split


def walk_forward(n: int, folds: int, val_fraction: float) -> list[SplitIndex]:
    """Expanding-window folds: fold k trains on everything before its test block.

    The ``folds + 1`` blocks are equal (the first is the initial training
    period, as in scikit-learn's ``TimeSeriesSplit``); the last
    ``val_fraction`` of each fold's history is its validation period.
    """
    from sklearn.model_selection import TimeSeriesSplit

    block = n // (folds + 1)
    if block < MIN_SAMPLES["test"] or block < MIN_SAMPLES["train"] + MIN_SAMPLES["val"]:
        raise ValueError(
            f"Too few labelled days ({n}) for --folds {folds}: each of the {folds + 1} blocks would hold {block} days, "
            f"but at least {MIN_SAMPLES['train'] + MIN_SAMPLES['val']} are needed; lower --folds, or --folds 0 to skip walk-forward"
        )
    out = []
    for train_idx, test_idx in TimeSeriesSplit(n_splits=folds).split(np.arange(n)):
        history = len(train_idx)
        n_val = max(MIN_SAMPLES["val"], round(history * val_fraction))
        out.append(SplitIndex(history - n_val, history, int(test_idx[-1]) + 1))
    return out
