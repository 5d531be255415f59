"""Data for sequence classification: UEA/UCR ``.ts`` series and IMDB text.

Series are kept as a list of ``(length_i, channels)`` arrays until they are
padded: nothing is truncated unless a fixed length is asked for (the
``unshared_rnn`` or ``--max-length``), and then the caller says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError

DEFAULT_DATASET = "japanese_vowels"
TFDS_PREFIX = "tfds:"
TEXT_DATASETS = ("imdb_reviews",)
# Where each TFDS text set downloads from: checked first, so offline fails in seconds, not after minutes of retries.
DOWNLOAD_HOSTS = {"imdb_reviews": ("ai.stanford.edu", 80)}


@dataclass
class Series:
    """Variable-length multivariate series with string labels."""

    values: list[np.ndarray]  # each (length_i, channels), float32
    labels: np.ndarray  # (n,) str
    source: str

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int32)

    @property
    def channels(self) -> int:
        return self.values[0].shape[1]

    def subset(self, index) -> Series:
        return Series([self.values[i] for i in index], self.labels[index], self.source)


@dataclass
class Normalizer:
    """Per-channel mean and standard deviation over the real (unpadded) steps."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))

    @classmethod
    def fit(cls, values: list[np.ndarray]) -> Normalizer:
        steps = np.concatenate(values, axis=0)  # (sum of lengths, channels)
        std = steps.std(axis=0)
        return cls(steps.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))


# ----------------------------------------------------------------------------- .ts files


def sktime_data_dir() -> Path:
    import sktime.datasets

    return Path(sktime.datasets.__file__).parent / "data"


def bundled_datasets() -> dict[str, Path]:
    """``{name: folder}`` of the .ts train/test pairs sktime ships."""
    root = sktime_data_dir()
    if not root.is_dir():
        return {}
    return {
        d.name: d
        for d in sorted(root.iterdir())
        if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file()
    }


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def bundled_paths(name: str) -> tuple[Path, Path]:
    """Train and test ``.ts`` paths of a bundled data set; ``japanese_vowels`` == ``JapaneseVowels``."""
    found = {_key(n): d for n, d in bundled_datasets().items()}
    folder = found.get(_key(name))
    if folder is None:
        names = ", ".join(bundled_datasets()) or "(none: is sktime installed?)"
        raise ValueError(
            f"Unknown dataset {name!r}. Bundled UEA/UCR sets: {names}; or "
            f"'tfds:imdb_reviews'; or set ts_train and ts_test (--ts-train, --ts-test) to any other .ts pair "
            f"(download from timeseriesclassification.com)"
        )
    return folder / f"{folder.name}_TRAIN.ts", folder / f"{folder.name}_TEST.ts"


def read_ts(path: str | os.PathLike) -> Series:
    """Read a labelled ``.ts`` file with sktime's loader, checking what sktime lets through.

    Raises FileNotFoundError for a missing file and ValueError for a malformed
    one, missing values, channels of unequal number or length, or an empty series.
    """
    from sktime.datasets import load_from_tsfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .ts file at {path}: check the path given as ts_train/ts_test")
    try:
        parts = split_ts_text(path.read_text(encoding="utf-8", errors="replace"))
        if parts is None:  # sktime's own error for this is an unrelated TypeError
            raise ValueError("no '@data' line")
        written = parts[2]
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    # sktime reports a file without headers (or plain text) as whatever its parser trips on, TypeError included
    except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{path}: malformed .ts file ({exc}). Expected the UEA/sktime format: '@problemName', "
            f"'@classLabel true ...' and '@data' headers, then one case per line, channels separated "
            f"by ':' and the class label last"
        ) from None
    values = []
    for i, (_, row) in enumerate(frame.iterrows(), start=1):  # i: the i-th case after @data
        channels = [np.asarray(cell, dtype=np.float32) for cell in row]
        lengths = {len(c) for c in channels}
        if len(lengths) > 1:
            raise ValueError(
                f"{path}: case {i} has channels of unequal length {sorted(lengths)}; every channel "
                f"of a case must have the same number of steps"
            )
        if lengths == {0}:
            raise ValueError(f"{path}: case {i} is empty (0 steps); remove it, there is nothing to classify")
        series = np.stack(channels, axis=1)  # (length, channels)
        if np.isnan(series).any():
            raise ValueError(
                f"{path}: case {i} has missing values ('?' or NaN); impute or drop them before "
                f"training (seqzoo does not guess values)"
            )
        values.append(series)
    if not values:
        raise ValueError(f"{path}: no cases after '@data'")
    labels = [str(label) for label in labels]
    # sktime lowercases class labels: 'Standing' would be served as 'standing', and labels 'A' and 'a'
    # would silently become one class. The file's own spelling wins wherever it lines up case by case.
    if len(written) == len(labels) and [w.lower() for w in written] == [label.lower() for label in labels]:
        labels = written
    return Series(values, np.asarray(labels).astype(str), str(path))


def split_ts_text(text: str) -> tuple[list[str], list[str], list[str]] | None:
    """A ``.ts`` file's text as (header lines up to ``@data``, one line per case, each case's class
    label as the file spells it: what follows the line's last ``:``), or None without an ``@data`` line."""
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.strip().lower().startswith("@data")), None)
    if at is None:
        return None
    cases = [line for line in lines[at + 1 :] if line.strip() and not line.startswith("#")]
    return lines[: at + 1], cases, [case.rsplit(":", 1)[-1].strip() for case in cases]


def class_names(labels: np.ndarray) -> list[str]:
    """Sorted unique labels, numerically when they are all numbers ('2' before '10')."""
    unique = sorted(set(labels.tolist()))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def check_compatible(train: Series, test: Series, names: list[str]) -> None:
    if test.channels != train.channels:
        raise ValueError(
            f"Train has {train.channels} channels ({train.source}) but test has {test.channels} "
            f"({test.source}); both files must describe the same channels"
        )
    unseen = sorted(set(test.labels.tolist()) - set(names))
    if unseen:
        raise ValueError(
            f"Test labels {unseen} never occur in training ({test.source}); a classifier cannot predict "
            f"a class it never saw. Training classes: {names}"
        )


def pad(values: list[np.ndarray], timesteps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (and, only with ``timesteps``, crop) to ``(n, T, channels)``; returns (padded, lengths)."""
    lengths = np.array([len(v) for v in values], dtype=np.int32)
    T = int(lengths.max()) if timesteps is None else timesteps
    out = np.zeros((len(values), T, values[0].shape[1]), np.float32)
    for i, v in enumerate(values):
        out[i, : min(len(v), T)] = v[:T]
    return out, np.minimum(lengths, T)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices; validation is ``fraction`` of the examples, stratified when possible."""
    index = np.arange(len(labels))
    if fraction <= 0:
        return index, index[:0]
    from sklearn.model_selection import train_test_split

    n_val = max(1, round(fraction * len(labels)))
    if n_val >= len(labels):
        raise ConfigError("val_fraction", fraction, f"small enough to leave training examples out of {len(labels)}")
    try:
        n_classes = len(set(labels.tolist()))
        return train_test_split(index, test_size=max(n_val, n_classes), stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify
        return train_test_split(index, test_size=n_val, random_state=seed)


# ----------------------------------------------------------------------------- TFDS text


def load_tfds_text(name: str, data_dir: str | None, quick: bool, val_fraction: float):
    """(train, val, test) ``tf.data`` of (text, label) and the class names of a TFDS text set.

    Prepares the set if needed; offline this fails with a clear ValueError.
    """
    if name not in TEXT_DATASETS:
        raise ValueError(
            f"Unsupported TFDS dataset {name!r}; supported: {', '.join(TFDS_PREFIX + n for n in TEXT_DATASETS)}"
        )
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        try:
            check_online(name)
            builder.download_and_prepare()
        except Exception as exc:  # network errors come in many types from many libraries
            raise ValueError(
                f"Could not download TFDS {name!r} into {builder.data_dir} ({type(exc).__name__}: "
                f"{str(exc)[:160]}). It needs internet once: run this command on a connected machine, or "
                f"copy a prepared tensorflow_datasets folder here and set data_dir (--data-dir). Offline, use a "
                f"UEA set (dataset='japanese_vowels')"
            ) from None
    names = builder.info.features["label"].names
    val_pct = int(round(val_fraction * 100))
    splits = ["train", "test"] if val_pct == 0 else [f"train[:{100 - val_pct}%]", f"train[{100 - val_pct}%:]", "test"]
    loaded = builder.as_dataset(split=splits, as_supervised=True)
    if val_pct == 0:
        loaded = [loaded[0], None, loaded[1]]
    if quick:
        loaded = [None if d is None else d.take(128) for d in loaded]
    return (*loaded, list(names))


def check_online(name: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError at once when ``name``'s download host cannot be reached."""
    from tasks.common import check_host

    check_host(*DOWNLOAD_HOSTS[name], timeout=timeout)


def describe(provenance: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in provenance.items() if k in ("dataset", "train", "val", "test", "classes"))
