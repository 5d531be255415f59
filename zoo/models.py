"""The model registry: every body is built by one function with one signature.

``apply(config, x)`` adds a zoo body to a functional graph and returns its
output tensor; a task puts its own input layers in front (embedding, masking)
and its own head behind. ``build(config, timesteps, features)`` wraps the same
body in a standalone ``keras.Model``.

For stateful, one-step-at-a-time use (sampling), the shared-weight bodies take
``initial_states`` and return their final states with ``return_states=True``;
layers are created in the same order every time, so a step model built from
the same config takes the trained model's weights with ``set_weights``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from zoo.config import ModelConfig, check_model_name, depth_range
from zoo.layers import CarriedSimpleRNN, FusedGRU, FusedLSTM, UnsharedRNN
from zoo.train_step import SeqModel

# Keras's LSTM and GRU with a faster CPU training loop (same weights and results).
_RNN_CLASSES = {"lstm": FusedLSTM, "gru": FusedGRU, "simple": CarriedSimpleRNN}
# The cells whose layer takes ``fused=`` (``ModelConfig.fused``).
_FUSED_CELLS = ("lstm", "gru")
# Number of state tensors each cell carries.
STATE_SIZES = {"lstm": 2, "gru": 1, "simple": 1}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    builder: Callable


def _check_input(x, config: ModelConfig) -> None:
    if len(x.shape) != 3:
        raise ValueError(
            f"Model {config.model!r} expects input of rank 3 (batch, timesteps, features), got shape {tuple(x.shape)}"
        )


def _float32(tensors):
    """Cast a mixed-precision body's outputs back to float32 for the head and the caller."""
    return [keras.ops.cast(t, "float32") for t in tensors]


def _shared_body(x, config: ModelConfig, *, initial_states=None, return_states=False, bidirectional=False):
    """Stack of shared-weight recurrent layers with dropout after each.

    ``initial_states`` is a flat list, ``STATE_SIZES[cell]`` tensors per layer
    (twice that per bidirectional layer), in the order the final states come
    back when ``return_states`` is True.
    """
    layer_cls = _RNN_CLASSES[config.cell]
    per_layer = STATE_SIZES[config.cell] * (2 if bidirectional else 1)
    if initial_states is not None and len(initial_states) != per_layer * config.num_layers:
        raise ValueError(
            f"Model {config.model!r} with {config.num_layers} layer(s) expects "
            f"{per_layer * config.num_layers} initial state tensors, got {len(initial_states)}"
        )
    fused = {"fused": config.fused} if config.cell in _FUSED_CELLS else {}
    states = []
    for i in range(config.num_layers):
        last = i == config.num_layers - 1
        layer = layer_cls(
            config.units,
            recurrent_dropout=config.recurrent_dropout,
            return_sequences=config.return_sequences or not last,
            return_state=return_states,
            dtype=config.dtype,
            name=f"{config.cell}_{i}",
            **fused,
        )
        if bidirectional:
            layer = keras.layers.Bidirectional(
                layer, merge_mode=config.merge_mode, dtype=config.dtype, name=f"bidirectional_{i}"
            )
        init = None if initial_states is None else list(initial_states[i * per_layer : (i + 1) * per_layer])
        out = layer(x, initial_state=init) if init is not None else layer(x)
        if return_states:
            x, layer_states = out[0], list(out[1:])
            states.extend(layer_states)
        else:
            x = out  # (batch, time, units) or (batch, units) on the last layer
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, dtype=config.dtype, name=f"dropout_{i}")(x)
    if config.dtype != "float32":
        x, *states = _float32([x, *states])
    return (x, states) if return_states else x


def _recurrent(x, config, *, initial_states=None, return_states=False):
    return _shared_body(x, config, initial_states=initial_states, return_states=return_states)


def _bidirectional(x, config, *, initial_states=None, return_states=False):
    return _shared_body(x, config, initial_states=initial_states, return_states=return_states, bidirectional=True)


def _unshared(x, config, *, initial_states=None, return_states=False):
    if initial_states is not None or return_states:
        raise ValueError(
            "unshared_rnn has weights tied to absolute positions 0..T-1 and cannot "
            "continue from a carried state; feed whole fixed-length windows instead"
        )
    if x.shape[1] is None:
        raise ValueError(
            "unshared_rnn needs a fixed number of timesteps, but the input length is "
            "unknown. Pad or crop sequences to a fixed length (e.g. seq_len or "
            "max_length) so the input shape is (batch, T, features)."
        )
    for i in range(config.num_layers):
        last = i == config.num_layers - 1
        x = UnsharedRNN(
            config.units,
            timesteps=x.shape[1],
            cell=config.cell,
            return_sequences=config.return_sequences or not last,
            dtype=config.dtype,
            name=f"unshared_{config.cell}_{i}",
        )(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, dtype=config.dtype, name=f"dropout_{i}")(x)
    return _float32([x])[0] if config.dtype != "float32" else x


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry("lstm", "one LSTM layer", _recurrent),
        ModelEntry("stacked_lstm", "LSTM layers stacked (num_layers >= 2), dropout between", _recurrent),
        ModelEntry("gru", "GRU layers (num_layers >= 1)", _recurrent),
        ModelEntry("bidirectional", "bidirectional LSTM or GRU (cell=, merge_mode=)", _bidirectional),
        ModelEntry("simple_rnn", "ungated Elman RNN baseline (SimpleRNN)", _recurrent),
        ModelEntry(
            "unshared_rnn",
            "unrolled RNN with its own weights at every time step (cell simple|lstm)",
            _unshared,
        ),
    )
}


def apply(config: ModelConfig, x, *, initial_states=None, return_states=False):
    """Apply the body described by ``config`` to the tensor ``x`` (batch, T, F).

    Returns ``(batch, T, units')`` when ``config.return_sequences`` else
    ``(batch, units')``; with ``return_states`` also the list of final states.
    Masks carried by ``x`` (``Masking``, ``Embedding(mask_zero=True)``) are
    honoured by every shared-weight model.
    """
    _check_input(x, config)
    return MODELS[config.model].builder(x, config, initial_states=initial_states, return_states=return_states)


def build(
    config: ModelConfig,
    timesteps: int | None,
    features: int,
    *,
    mask_value: float | None = None,
    name: str | None = None,
) -> keras.Model:
    """A standalone body ``keras.Model`` on inputs of shape (batch, timesteps, features).

    With ``mask_value`` set, steps whose features all equal it are masked.
    """
    if isinstance(features, bool) or not isinstance(features, int) or features <= 0:
        raise ValueError(
            f"Received an invalid value for argument features, expected a positive integer, got {features!r}"
        )
    inputs = keras.Input((timesteps, features), name="inputs")
    x = inputs if mask_value is None else keras.layers.Masking(mask_value, name="masking")(inputs)
    return SeqModel(inputs, apply(config, x), name=name or config.model)


def state_shapes(config: ModelConfig) -> list[int]:
    """Width of each state tensor ``apply(..., return_states=True)`` returns."""
    if config.model == "unshared_rnn":
        raise ValueError("unshared_rnn carries no state between calls")
    per_layer = STATE_SIZES[config.cell] * (2 if config.model == "bidirectional" else 1)
    return [config.units] * (per_layer * config.num_layers)


def count_params(config: ModelConfig, timesteps: int | None, features: int) -> int:
    return build(config, timesteps, features).count_params()


def describe(model: str) -> str:
    check_model_name(model)
    return MODELS[model].description


__all__ = ["MODELS", "ModelEntry", "apply", "build", "count_params", "depth_range", "describe", "state_shapes"]
