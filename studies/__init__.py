"""The seed questions as runnable experiments: ``seqzoo study NAME``."""
