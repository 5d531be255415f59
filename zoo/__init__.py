"""seqzoo's model zoo: recurrent bodies that a task completes with its head.

    from zoo import ModelConfig, build
    body = build(ModelConfig("gru", units=32, num_layers=2), timesteps=None, features=12)

Names that need Keras are loaded on first use, so ``zoo.config`` (and the
``seqzoo`` command's help) stay light.
"""

import importlib
import importlib.metadata
import os

from zoo.config import MODEL_NAMES, ModelConfig

# TensorFlow's C++ chatter hides the output people came for, its ERROR lines included: what it logs
# at that level without failing is a note about the machine (oneDNN's "supports DT_BOOL only on
# platforms with AVX-512" on some CPUs); a real failure still raises a Python exception.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    __version__ = importlib.metadata.version("seqzoo")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "UnsharedRNN": "zoo.layers",
    "MODELS": "zoo.models",
    "apply": "zoo.models",
    "build": "zoo.models",
    "count_params": "zoo.models",
    "describe": "zoo.models",
    "state_shapes": "zoo.models",
    "SeqModel": "zoo.train_step",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = ["MODEL_NAMES", "ModelConfig", "__version__", *_LAZY]
