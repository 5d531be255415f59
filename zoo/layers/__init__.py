"""Custom layers of the zoo."""

from zoo.layers.fused_lstm import FusedLSTM
from zoo.layers.unshared_rnn import UnsharedRNN

__all__ = ["FusedLSTM", "UnsharedRNN"]
