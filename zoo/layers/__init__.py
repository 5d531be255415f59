"""Custom layers of the zoo."""

from zoo.layers.unshared_rnn import UnsharedRNN

__all__ = ["UnsharedRNN"]
