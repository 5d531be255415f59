"""seqzoo's tasks: data, heads, losses, metrics, baselines, exports, and the typed API over them.

Every task module has the same shape (:mod:`tasks.options`)::

    import tasks
    textgen = tasks.get("textgen")
    result = textgen.run(textgen.Options.quick(units=32))    # -> tasks.options.Result
    textgen.report(result)                                   # what the command line prints
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Task name -> (module, one-line description). Modules load on first use, so `seqzoo --help` stays light.
TASKS = {
    "textgen": ("tasks.text_generation", "character-level language model on text"),
    "classify": ("tasks.sequence_classification", "sequence classification (UEA series, IMDB)"),
    "movement": ("tasks.movement", "next-day up/down movement from daily prices"),
}


def get(name: str) -> ModuleType:
    """The task module called ``name``: it has ``Options``, ``run(options) -> Result`` and ``report(result)``."""
    if name not in TASKS:
        from zoo.errors import ConfigError

        raise ConfigError("task", name, "one of " + ", ".join(TASKS))
    return importlib.import_module(TASKS[name][0])


__all__ = ["TASKS", "get"]
