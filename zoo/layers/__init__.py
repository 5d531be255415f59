"""Custom layers of the zoo."""

from zoo.layers.carry import CarriedSimpleRNN, CarriedState, StateSlot
from zoo.layers.fused_rnn import FusedGRU, FusedLSTM
from zoo.layers.unshared_rnn import UnsharedRNN

__all__ = ["CarriedSimpleRNN", "CarriedState", "StateSlot", "FusedGRU", "FusedLSTM", "UnsharedRNN"]
