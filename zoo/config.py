"""The single source of truth for a zoo model's architecture.

A :class:`ModelConfig` is frozen, validated on construction, saved beside every
export (``card.json``) and is all that is needed to rebuild the same body.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError

CELLS = ("lstm", "gru", "simple")
MERGE_MODES = ("concat", "sum", "mul", "ave")
# Keras dtype policies of the recurrent body: full precision, or bfloat16 compute
# with float32 weights (fast on CPUs with native bf16 and on GPUs).
DTYPES = ("float32", "mixed_bfloat16")

# Which cells each model accepts; the first one is the default.
_MODEL_CELLS = {
    "lstm": ("lstm",),
    "stacked_lstm": ("lstm",),
    "gru": ("gru",),
    "simple_rnn": ("simple",),
    "bidirectional": ("lstm", "gru"),
    "unshared_rnn": ("simple", "lstm"),
}
# Inclusive (min, max) depth per model; None means unbounded.
_MODEL_DEPTH = {
    "lstm": (1, 1),
    "stacked_lstm": (2, None),
    "gru": (1, None),
    "simple_rnn": (1, None),
    "bidirectional": (1, None),
    "unshared_rnn": (1, None),
}
MODEL_NAMES = tuple(_MODEL_CELLS)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Received an invalid value for argument {name}, expected a positive integer, got {value!r}")


def _fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"Received an invalid value for argument {name}, expected a float in [0, 1), got {value!r}")


def check_model_name(model: str) -> None:
    if model not in MODEL_NAMES:
        raise ValueError(f"Unknown model {model!r}. Valid models: {', '.join(MODEL_NAMES)}")


def depth_range(model: str) -> tuple[int, int | None]:
    """Inclusive (min, max) ``num_layers`` for ``model``; max None is unbounded."""
    check_model_name(model)
    return _MODEL_DEPTH[model]


def cells_for(model: str) -> tuple[str, ...]:
    """The cells ``model`` accepts; the first one is its default."""
    check_model_name(model)
    return _MODEL_CELLS[model]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a zoo body. Field names are Keras's own argument names.

    Attributes:
        model: registry name, one of ``MODEL_NAMES``.
        units: hidden units per recurrent layer (per direction when bidirectional).
        num_layers: depth. ``lstm`` is one layer; ``stacked_lstm`` needs >= 2.
        dropout: rate of a ``Dropout`` after every recurrent layer.
        recurrent_dropout: Keras ``recurrent_dropout`` of every recurrent layer.
        cell: recurrent cell; ``None`` picks the model's default. Only
            ``bidirectional`` (lstm|gru) and ``unshared_rnn`` (simple|lstm)
            have a choice.
        merge_mode: how ``bidirectional`` merges directions.
        return_sequences: per-step outputs (language models) when True, else a
            summary of the sequence (classification).
        dtype: Keras dtype policy of the recurrent layers, ``float32`` or
            ``mixed_bfloat16`` (bf16 compute, float32 weights; the body's
            outputs and states are cast back to float32 for the head).
        fused: use seqzoo's fused CPU loop for LSTM/GRU layers; False gives
            stock ``keras.layers.LSTM``/``GRU`` behaviour, to A/B them or fall
            back. Same weights either way; other cells ignore it.
    """

    model: str = "lstm"
    units: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    cell: str | None = None
    merge_mode: str = "concat"
    return_sequences: bool = False
    dtype: str = "float32"
    fused: bool = True

    def __post_init__(self) -> None:
        check_model_name(self.model)
        _positive_int("units", self.units)
        _positive_int("num_layers", self.num_layers)
        _fraction("dropout", self.dropout)
        _fraction("recurrent_dropout", self.recurrent_dropout)
        low, high = _MODEL_DEPTH[self.model]
        if self.num_layers < low or (high is not None and self.num_layers > high):
            hint = {
                "lstm": "; use model 'stacked_lstm' for num_layers >= 2",
                "stacked_lstm": "; use model 'lstm' for a single layer",
            }.get(self.model, "")
            bound = f"exactly {low}" if low == high else f">= {low}"
            raise ValueError(f"Received num_layers={self.num_layers} for model {self.model!r}, expected {bound}{hint}")
        allowed = _MODEL_CELLS[self.model]
        cell = allowed[0] if self.cell is None else self.cell
        if cell not in allowed:
            extra = ""
            if self.model == "bidirectional" and cell == "simple":
                extra = " (the bidirectional wrapper is offered for gated cells)"
            raise ValueError(
                f"Received cell={cell!r} for model {self.model!r}, expected one of {', '.join(allowed)}{extra}"
            )
        object.__setattr__(self, "cell", cell)
        if self.merge_mode not in MERGE_MODES:
            raise ValueError(f"Received merge_mode={self.merge_mode!r}, expected one of {', '.join(MERGE_MODES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"Received dtype={self.dtype!r}, expected one of {', '.join(DTYPES)}")
        if not isinstance(self.fused, bool):
            raise ConfigError("fused", self.fused, "a bool (True or False)")
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown ModelConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes``; switching ``model`` re-picks the default cell."""
        if "model" in changes and "cell" not in changes:
            changes["cell"] = None
        return dataclasses.replace(self, **changes)
