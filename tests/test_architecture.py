"""The code's structure: the zoo's modules import one way, training uses only Keras's public
API, task settings travel as typed Options (never as command-line argument lists)."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "tasks", "tuning", "studies", "benchmarks")


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _zoo_imports(path: Path) -> set[str]:
    """The zoo modules ``path`` imports at module level (lazy imports inside functions are not edges)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zoo"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("zoo"))
    return names


# The modules beneath zoo.training, which composes them.
TRAINING_MECHANICS = (
    "zoo.files",
    "zoo.preemption",
    "zoo.optimizers",
    "zoo.bptt",
    "zoo.train_step",
    "zoo.monitor",
    "zoo.checkpoint",
)


def test_zoo_modules_import_one_way():
    modules = {_module_name(p): p for p in _modules("zoo")}
    graph = {name: {m for m in _zoo_imports(path) if m in modules and m != name} for name, path in modules.items()}
    visiting, done = set(), set()

    def visit(node, path):
        if node in visiting:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if node in done:
            return
        visiting.add(node)
        for child in sorted(graph[node]):
            visit(child, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    # The training mechanics are layered: none imports the module that composes them.
    for low in TRAINING_MECHANICS:
        assert "zoo.training" not in graph[low], low


@pytest.mark.parametrize("module", [*TRAINING_MECHANICS, "zoo.training", "zoo.models", "zoo.layers"])
def test_each_zoo_module_imports_alone(module):
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]


# Keras internals the training code once reached into; the public hooks replace them.
PRIVATE_KERAS = re.compile(
    r"object\.__setattr__\((model|layer|self\.model)|\._symbolic_build|\._maybe_symbolic_build|\._loss_tracker|"
    r"\._compile_metrics|\._compile_loss|\._distribute_strategy|\._tracker|\.__dict__\.pop|"
    r"\b(train_function|test_function|predict_function)\s*=\s*None"
)


def test_no_keras_internals_in_the_package():
    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for package in PACKAGES
        for p in _modules(package)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if PRIVATE_KERAS.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_no_command_line_argument_lists_outside_the_command_line_layer():
    """Studies, benchmarks, the tuner and the tasks call Options/run: a parser only ever parses the
    command line it was given (``argv``), never an argument list built in code."""
    pattern = re.compile(r"parse_(known_)?args\((?!\s*(argv|rest|list\(argv\))?\s*\))")
    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for package in PACKAGES
        for p in _modules(package)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) and "sys.argv" not in line
    ]
    assert not hits, "\n".join(hits)


# ----------------------------------------------------------------------------- the typed task API


@pytest.mark.parametrize("name", ["classify", "textgen", "movement"])
def test_every_task_has_the_same_typed_shape(name):
    import tasks
    from tasks.options import TaskOptions

    task = tasks.get(name)
    assert issubclass(task.Options, TaskOptions) and dataclasses.is_dataclass(task.Options)
    assert task.Options.__dataclass_params__.frozen
    for attr in ("run", "report", "main", "load_data", "build_model", "compile", "TASK", "OBJECTIVE"):
        assert hasattr(task, attr), attr
    options = task.Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 3
    # The quick preset is a preset: what the caller sets explicitly wins over it.
    quick = task.Options.quick(epochs=2, seed=7)
    assert quick.small_data and quick.epochs == 2 and quick.seed == 7
    assert task.Options.quick().epochs == 1


def test_unknown_task_is_a_clear_error():
    import tasks
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="task must be one of textgen, classify, movement, got 'translate'"):
        tasks.get("translate")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"units": 0}, "units must be a positive integer, got 0"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"dropout": 1.5}, "dropout must be a number in [0, 1), got 1.5"),
        ({"model": "transformer"}, "model must be one of lstm"),
        ({"clipnorm": 1.0, "global_clipnorm": 1.0}, "global_clipnorm must be None when clipnorm is set"),
        (
            {"model": "lstm", "num_layers": 2},
            "num_layers must be exactly 1 for model 'lstm', got 2. Use model 'stacked_lstm'",
        ),
        ({"bptt": "0"}, "bptt must be"),
    ],
)
def test_options_errors_name_the_field_and_the_value(fields, message):
    from tasks.sequence_classification import Options
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        Options(**fields)
    assert message in str(info.value)


def test_command_line_shows_fields_as_flags_and_explicit_flags_beat_quick(capsys):
    from tasks.options import build_parser, options_from_args
    from tasks.sequence_classification import Options, main

    parser = build_parser(Options, "seqzoo train classify")
    options = options_from_args(Options, parser.parse_args(["--quick", "--epochs", "3", "--no-export"]))
    assert options.small_data and options.epochs == 3 and options.export is False
    assert options_from_args(Options, parser.parse_args([])) == Options()
    assert main(["--quick", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "seqzoo train classify: error: --epochs must be a positive integer, got 0"
