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
import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from zoo.errors import ConfigError, FileProblem

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


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both periods in (0, 1), with room left for the training period."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(name, value, "a number in (0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            "test_fraction",
            test_fraction,
            f"below 1 - val_fraction = {1 - val_fraction:g}",
            "The training period is what the validation and test periods leave",
        )


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def _large_enough(sizes: dict[str, int]) -> bool:
    return all(sizes[k] >= MIN_SAMPLES[k] for k in sizes)


def chronological_split(
    n: int, val_fraction: float, test_fraction: float, *, window: int, path: str | os.PathLike | None = None
) -> SplitIndex:
    """Train, then validation, then test, in time order; each large enough to mean something.

    Too few days for the split is a :class:`ConfigError` on ``window`` when a shorter
    window leaves enough; otherwise the history itself is too short: a
    :class:`FileProblem` naming ``path`` (the prices' file, if any), else a ``ValueError``.
    """
    check_fractions(val_fraction, test_fraction)
    sizes = _split_sizes(n, val_fraction, test_fraction)
    if n > 0 and _large_enough(sizes):
        return SplitIndex(sizes["train"], sizes["train"] + sizes["val"], n)
    rows = n + window + 1
    train_fraction = 1 - val_fraction - test_fraction
    need = math.ceil(
        max(
            MIN_SAMPLES["test"] / test_fraction,
            MIN_SAMPLES["val"] / val_fraction,
            MIN_SAMPLES["train"] / train_fraction,
        )
    )
    got = f"{n} labelled days split into {sizes}" if n > 0 else "no labelled days"
    problem = (
        f"Too few rows: {rows} daily rows with window {window} give {got}, but the split needs at least "
        f"{MIN_SAMPLES} days, i.e. about {need + window + 1} rows with these fractions"
    )
    # Samples are rows - 1 - window: the largest window that leaves every period its minimum.
    fits = [
        w
        for w in range(window - 1, 0, -1)
        if rows - 1 - w > 0 and _large_enough(_split_sizes(rows - 1 - w, val_fraction, test_fraction))
    ]
    if fits:
        raise ConfigError(
            "window",
            window,
            f"at most {fits[0]} for {rows} daily rows",
            problem + "; provide a longer history or a shorter window",
        )
    fix = "Provide a longer history (even window=1 leaves too few days)"
    if path is not None:
        raise FileProblem(path, problem, fix)
    raise ValueError(f"{problem}. {fix}")


def walk_forward(n: int, folds: int, val_fraction: float) -> list[SplitIndex]:
    """Expanding-window folds: fold k trains on everything before its test block.

    The ``folds + 1`` blocks are equal (the first is the initial training
    period, as in scikit-learn's ``TimeSeriesSplit``); the last
    ``val_fraction`` of each fold's history is its validation period.
    """
    from sklearn.model_selection import TimeSeriesSplit

    block = n // (folds + 1)
    least = max(MIN_SAMPLES["test"], MIN_SAMPLES["train"] + MIN_SAMPLES["val"])
    if block < least:
        most = n // least - 1  # the most folds whose blocks still hold `least` days
        expected = (
            f"at most {most} for {n} labelled days, or 0 to skip walk-forward"
            if most >= 2
            else f"0 (skip walk-forward): {n} labelled days are too few for 2 folds"
        )
        raise ConfigError(
            "folds",
            folds,
            expected,
            f"Each of the {folds + 1} blocks would hold {block} days, but a fold needs at least {least}",
        )
    out = []
    for train_idx, test_idx in TimeSeriesSplit(n_splits=folds).split(np.arange(n)):
        history = len(train_idx)
        n_val = max(MIN_SAMPLES["val"], round(history * val_fraction))
        out.append(SplitIndex(history - n_val, history, int(test_idx[-1]) + 1))
    return out
