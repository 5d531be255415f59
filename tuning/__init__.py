"""KerasTuner searches over seqzoo's models for any task (``seqzoo tune TASK``, or :func:`tune` from Python).

- :mod:`tuning.space`: the search space (models, ranges, pins) and its validation.
- :mod:`tuning.hypermodel`: :class:`~tuning.hypermodel.SeqzooHyperModel`, a ``keras_tuner.HyperModel``
  on the task's own build/compile and ``zoo.training.fit``, fixed by the task's ``Options``.
- :mod:`tuning.search`: tuners, the results table and plot, the export of the best model, :func:`tune`.
- :mod:`tuning.distributed`: KerasTuner's chief/worker mode and a local launcher.
- :mod:`tuning.cli`: the command line.

From Python::

    from tasks import sequence_classification as classify
    from tuning import SearchSpace, tune

    result = tune("classify", classify.Options.quick(), space=SearchSpace(models=("gru", "lstm")), max_trials=4)
    result.rows, result.best.hyperparameters.values, result.export
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuning.search import SearchResult, tune
    from tuning.space import SearchSpace

# Loaded on first use: `python -m tuning` must be able to quiet TensorFlow before Keras is imported.
_LAZY = {"tune": "tuning.search", "SearchResult": "tuning.search", "SearchSpace": "tuning.space"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")


__all__ = ["SearchResult", "SearchSpace", "tune"]
