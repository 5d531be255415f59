"""The search space: which zoo models, which ranges, what the user pinned.

Searched hyperparameters (names are Keras's / ``ModelConfig``'s own words, so a
name, a flag and a config field agree): ``model``, ``num_layers``, ``units``,
``clipnorm`` ("none" is one of its values), ``learning_rate``, ``dropout``.

Depth and model families: ``zoo.config.depth_range`` says ``lstm`` is exactly
one layer and ``stacked_lstm`` at least two. Instead of mapping one depth value
onto every family (which would make ``lstm`` x ``num_layers=1,2,3`` three
identical trials), depth is drawn inside a KerasTuner conditional scope on
``model``: families are grouped by their depth range clipped to the searched
range, each group gets its own hyperparameter ``num_layers[gru,simple_rnn]``
(KerasTuner keeps one value per name, so scopes cannot share one), and a family
whose range holds one value (``lstm``) gets no depth hyperparameter at all.
Results tables and cards show the effective ``num_layers`` of every trial. A
pinned ``--pin num_layers=N`` is one unconditional fixed value. A family that
cannot meet the range or pin is dropped (with a note); none left is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from zoo.config import check_model_name, depth_range

SEARCHED = ("model", "num_layers", "units", "clipnorm", "learning_rate", "dropout")
DEFAULT_MODELS = ("lstm", "stacked_lstm", "gru")
DEFAULT_CLIPNORMS = ("none", "0.5", "1.0", "5.0")
# Inclusive default ranges of the numeric hyperparameters; --range narrows them.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "num_layers": (1, 3),
    "units": (16, 128),  # powers of two: 16, 32, 64, 128 (log sampling, step x2)
    "learning_rate": (1e-4, 1e-2),  # log sampling
    "dropout": (0.0, 0.5),  # step 0.1
}
# Explicit defaults (what a hyperparameter holds before a tuner draws it; clipped into narrowed ranges).
DEFAULTS: dict[str, Any] = {"num_layers": 1, "units": 64, "learning_rate": 1e-3, "dropout": 0.0, "clipnorm": "none"}
INTS = ("num_layers", "units")
DROPOUT_STEP = 0.1


def canonical_clipnorm(value: Any) -> str:
    """``"none"`` or a positive float written as ``str(float)`` (``"1"`` -> ``"1.0"``)."""
    text = str(value).strip().lower()
    if text == "none":
        return "none"
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number > 0 or math.isinf(number):
        raise ValueError(f"Received clipnorm={value!r}, expected 'none' or a positive number")
    return str(number)


def clipnorm_value(choice: str) -> float | None:
    """The ``compile_model`` keyword for a clipnorm choice."""
    return None if choice == "none" else float(choice)


def _number(name: str, text: str) -> float | int:
    try:
        return int(text) if name in INTS else float(text)
    except ValueError:
        kind = "an integer" if name in INTS else "a number"
        raise ValueError(f"Received {name}={text!r}, expected {kind}") from None


def _check_bounds(name: str, low: float, high: float, where: str) -> None:
    if low > high:
        raise ValueError(f"{where}: min > max for {name} ({low} > {high}); write it as {name}=MIN:MAX with MIN <= MAX")
    if name in INTS and low < 1:
        raise ValueError(f"{where}: {name} must be >= 1, got {low}")
    if name == "learning_rate" and low <= 0:
        raise ValueError(f"{where}: learning_rate must be > 0, got {low}")
    if name == "dropout" and not (0 <= low and high < 1):
        raise ValueError(f"{where}: dropout must lie in [0, 1), got {low}:{high}")


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not value.strip():
        raise ValueError(f"{flag} {text!r}: expected NAME=VALUE, e.g. {flag} units=64")
    if name not in SEARCHED:
        raise ValueError(f"{flag} {text!r}: unknown hyperparameter {name!r}; searched ones are: {', '.join(SEARCHED)}")
    return name, value.strip()


def parse_pins(items: list[str] | None) -> dict[str, Any]:
    """``["units=64", "clipnorm=none", "model=gru"]`` -> typed values."""
    pins: dict[str, Any] = {}
    for item in items or []:
        name, value = _split_assignment(item, "--pin")
        if name == "model":
            check_model_name(value)
            pins[name] = value
        elif name == "clipnorm":
            pins[name] = canonical_clipnorm(value)
        else:
            number = _number(name, value)
            _check_bounds(name, number, number, f"--pin {item}")
            pins[name] = number
    return pins


def parse_ranges(items: list[str] | None) -> dict[str, tuple[float, float]]:
    """``["units=16:64", "learning_rate=1e-4:1e-3"]`` -> {name: (min, max)}."""
    ranges: dict[str, tuple[float, float]] = {}
    for item in items or []:
        name, value = _split_assignment(item, "--range")
        if name not in DEFAULT_RANGES:
            flag = "--models" if name == "model" else "--clipnorms"
            raise ValueError(f"--range {item!r}: {name} is a choice, not a range; choose its values with {flag}")
        low_text, sep, high_text = value.partition(":")
        if not sep:
            raise ValueError(f"--range {item!r}: expected {name}=MIN:MAX")
        low, high = _number(name, low_text), _number(name, high_text)
        _check_bounds(name, low, high, f"--range {item}")
        ranges[name] = (low, high)
    return ranges


def split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@dataclass(frozen=True)
class SearchSpace:
    """What is searched and how; validated on construction (see the module doc)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    clipnorms: tuple[str, ...] = DEFAULT_CLIPNORMS
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    pins: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        for name in self.pins:
            if name not in SEARCHED:
                raise ValueError(
                    f"Cannot pin unknown hyperparameter {name!r}; searched ones are: {', '.join(SEARCHED)}"
                )
            if name in self.ranges:
                raise ValueError(f"{name} is both pinned and given a range; pass one of --pin {name}=... / --range")
        ranges = {**DEFAULT_RANGES, **self.ranges}
        for name, (low, high) in ranges.items():
            if name not in DEFAULT_RANGES:
                raise ValueError(f"Unknown range {name!r}; numeric hyperparameters are: {', '.join(DEFAULT_RANGES)}")
            _check_bounds(name, low, high, "search space")
        object.__setattr__(self, "ranges", ranges)
        models = (self.pins["model"],) if "model" in self.pins else tuple(dict.fromkeys(self.models))
        if not models:
            raise ValueError("Empty search space: no model families to search; pass e.g. --models lstm,gru")
        for m in models:
            check_model_name(m)
        clipnorms = (self.pins["clipnorm"],) if "clipnorm" in self.pins else self.clipnorms
        clipnorms = tuple(dict.fromkeys(canonical_clipnorm(c) for c in clipnorms))
        if not clipnorms:
            raise ValueError("Empty search space: no clipnorm values; pass e.g. --clipnorms none,1.0")
        object.__setattr__(self, "clipnorms", clipnorms)
        depths = {}
        for m in models:
            low, high = self.depth_bounds(m)
            if low > high:
                self.notes.append(
                    f"model {m} left out: its depth range {_fmt_range(depth_range(m))} "
                    f"does not meet num_layers {self._depth_wanted()}"
                )
            else:
                depths[m] = (low, high)
        if not depths:
            raise ValueError(
                f"Empty search space: no model in {', '.join(models)} allows num_layers {self._depth_wanted()} "
                "(lstm is exactly 1 layer, stacked_lstm needs >= 2); change --models, --pin or --range num_layers"
            )
        object.__setattr__(self, "models", tuple(depths))
        if not self.searched():
            raise ValueError(
                "Empty search space: every hyperparameter is pinned or has a single value; unpin one or widen a "
                "--range (or train the one configuration with 'seqzoo train')"
            )

    def _depth_wanted(self) -> str:
        if "num_layers" in self.pins:
            return f"= {self.pins['num_layers']}"
        return f"in {_fmt_range(self.ranges['num_layers'])}"

    def depth_bounds(self, model: str) -> tuple[int, int]:
        """Inclusive depth range of ``model`` inside the searched (or pinned) one; low > high: impossible."""
        low, high = depth_range(model)
        if "num_layers" in self.pins:
            want_low = want_high = self.pins["num_layers"]
        else:
            want_low, want_high = self.ranges["num_layers"]
        return max(low, int(want_low)), min(int(want_high), high if high is not None else int(want_high))

    def depth_groups(self) -> dict[tuple[int, int], list[str]]:
        """{(min, max) depth: [models]} -- one conditional ``num_layers`` per group."""
        groups: dict[tuple[int, int], list[str]] = {}
        for m in self.models:
            groups.setdefault(self.depth_bounds(m), []).append(m)
        return groups

    def units_grid(self) -> list[int]:
        low, high = (int(v) for v in self.ranges["units"])
        grid = [low]
        while grid[-1] * 2 <= high:
            grid.append(grid[-1] * 2)
        return grid

    def default(self, name: str) -> Any:
        """The explicit default of ``name``, moved into its (narrowed) range."""
        if name == "units":
            return min(self.units_grid(), key=lambda u: abs(math.log(u / DEFAULTS["units"])))
        if name == "clipnorm":
            return DEFAULTS["clipnorm"] if DEFAULTS["clipnorm"] in self.clipnorms else self.clipnorms[0]
        if name == "dropout":
            return float(self.ranges["dropout"][0])
        low, high = self.ranges[name]
        return type(low)(min(max(DEFAULTS[name], low), high))

    def searched(self) -> list[str]:
        """Names that take more than one value."""
        out = []
        if len(self.models) > 1:
            out.append("model")
        if any(low < high for low, high in self.depth_groups()):
            out.append("num_layers")
        if "units" not in self.pins and len(self.units_grid()) > 1:
            out.append("units")
        if len(self.clipnorms) > 1:
            out.append("clipnorm")
        for name in ("learning_rate", "dropout"):
            low, high = self.ranges[name]
            if name not in self.pins and low < high:
                out.append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form, saved in the project so a resume can check it searches the same space."""
        return {
            "models": list(self.models),
            "clipnorms": list(self.clipnorms),
            "ranges": {k: list(v) for k, v in sorted(self.ranges.items())},
            "pins": dict(sorted(self.pins.items())),
        }


def _fmt_range(bounds: tuple[Any, Any]) -> str:
    low, high = bounds
    return f"[{low}, {'inf' if high is None else high}]"
