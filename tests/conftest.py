"""Shared fixtures: every test starts from the same seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def seed():
    """Seed Python, NumPy and the backend so runs repeat exactly."""
    keras.utils.set_random_seed(1234)
    return 1234
