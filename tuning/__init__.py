"""KerasTuner searches over seqzoo's models for any task (``seqzoo tune TASK``).

- :mod:`tuning.space`: the search space (models, ranges, pins) and its validation.
- :mod:`tuning.hypermodel`: :class:`~tuning.hypermodel.SeqzooHyperModel`, a ``keras_tuner.HyperModel``
  on the task's own build/compile and ``zoo.training.fit``.
- :mod:`tuning.search`: tuners, the results table and plot, the export of the best model.
- :mod:`tuning.distributed`: KerasTuner's chief/worker mode and a local launcher.
- :mod:`tuning.cli`: the command line.
"""
