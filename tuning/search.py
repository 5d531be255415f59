"""Tuners, the results table and plot, the export of the best model, and :func:`tune` (a search from Python).

Every tuner records, per trial, the seconds it took and which tuner process
ran it (``trial_<id>/seqzoo.json``), and appends ``start``/``end`` events to
``<project>/events.jsonl`` -- the results table and the resume and
distributed tests read them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import keras_tuner as kt

from tasks.options import TaskOptions
from tuning.hypermodel import SeqzooHyperModel, check_options, task_module
from tuning.space import SEARCHED, SearchSpace
from zoo import files

EVENTS = "events.jsonl"
SIDECAR = "seqzoo.json"
SEARCH_FILE = "search.json"
COLUMNS = ["trial", "status", *SEARCHED, "epochs", "score", "seconds", "tuner", "runs", "reason"]
REASON_WIDTH = 60  # characters of a failure reason in the printed table (the files keep it whole)


def _append_event(project: str | os.PathLike, **event: Any) -> None:
    line = json.dumps({"time": round(time.time(), 3), "pid": os.getpid(), **event}) + "\n"
    with open(Path(project) / EVENTS, "a", encoding="utf-8") as fh:  # O_APPEND: one line per write
        fh.write(line)


def read_events(project: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(project) / EVENTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Recorded:
    """Mixin: times every trial and records the tuner that ran it."""

    def run_trial(self, trial, *args, **kwargs):
        _append_event(self.project_dir, event="start", trial=trial.trial_id, tuner=self.tuner_id)
        start = time.perf_counter()
        result = super().run_trial(trial, *args, **kwargs)
        sidecar = {
            "seconds": round(time.perf_counter() - start, 3),
            "tuner": self.tuner_id,
            "pid": os.getpid(),
            "epochs_run": _epochs_run(result),
        }
        (Path(self.get_trial_dir(trial.trial_id)) / SIDECAR).write_text(json.dumps(sidecar) + "\n")
        return result

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # the oracle has the trial's end now
        _append_event(self.project_dir, event="end", trial=trial.trial_id, tuner=self.tuner_id, status=trial.status)


def _epochs_run(result: Any) -> int | None:
    """Epochs the trial's ``fit`` ran (the most of its executions), from its History."""
    histories = result if isinstance(result, list) else [result]
    counts = [len(h.epoch) for h in histories if hasattr(h, "epoch")]
    return max(counts) if counts else None


def trial_epochs(trial, default: int) -> int:
    """Epochs the trial's model was trained in all: Hyperband's ``tuner/epochs``, else the task's epochs."""
    return int(trial.hyperparameters.values.get("tuner/epochs", default))


class RandomSearch(_Recorded, kt.RandomSearch):
    pass


class BayesianOptimization(_Recorded, kt.BayesianOptimization):
    pass


class Hyperband(_Recorded, kt.Hyperband):
    pass


TUNERS = {"random": RandomSearch, "bayesian": BayesianOptimization, "hyperband": Hyperband}


def searched_dimensions(hypermodel: SeqzooHyperModel) -> int:
    """How many hyperparameters the space searches (pins and single choices are fixed, not counted)."""
    hp = hypermodel.fixed_hyperparameters()
    hypermodel.draw(hp)
    return sum(not isinstance(h, kt.engine.hyperparameters.Fixed) for h in hp.space)


def initial_points(max_trials: int, dimensions: int) -> int:
    """Bayesian: random trials before the Gaussian process proposes any.

    KerasTuner's default, 3 per searched dimension, exceeds ``--max-trials 10`` for the default
    space (7 dimensions: 21), which would make the search a random one; half the trials (at least 2,
    at most KerasTuner's number) leave the other half to the Gaussian process.
    """
    return min(max(3 * dimensions, 3), max(2, max_trials // 2))


def make_tuner(
    kind: str,
    hypermodel: SeqzooHyperModel,
    *,
    project: str | os.PathLike,
    max_trials: int,
    seed: int,
    overwrite: bool = False,
    num_initial_points: int | None = None,
) -> kt.Tuner:
    """A KerasTuner tuner over ``hypermodel`` in ``project`` (resumed when it exists, unless ``overwrite``).

    ``num_initial_points`` (bayesian only): random trials before the Gaussian process; default
    :func:`initial_points`.
    """
    if kind not in TUNERS:
        raise ValueError(f"Unknown tuner {kind!r}; expected one of {', '.join(TUNERS)}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials <= 0:
        raise ValueError(f"Received --max-trials {max_trials!r}, expected a positive integer")
    if num_initial_points is not None:
        if kind != "bayesian":
            raise ValueError(f"--initial-points is for --tuner bayesian, not {kind}")
        if isinstance(num_initial_points, bool) or not isinstance(num_initial_points, int) or num_initial_points <= 0:
            raise ValueError(f"Received --initial-points {num_initial_points!r}, expected a positive integer")
    project = Path(project)
    common = dict(
        objective=hypermodel.objective,
        seed=seed,
        hyperparameters=hypermodel.fixed_hyperparameters(),
        directory=str(project.parent),
        project_name=project.name,
        overwrite=overwrite,
    )
    if kind == "hyperband":
        if hypermodel.epochs < 2:
            raise ValueError(
                "--tuner hyperband needs --epochs >= 2 (it trains brackets of growing epochs); "
                "use --tuner random with --quick"
            )
        return Hyperband(hypermodel, max_epochs=hypermodel.epochs, factor=3, **common)
    if kind == "bayesian":
        points = num_initial_points or initial_points(max_trials, searched_dimensions(hypermodel))
        return BayesianOptimization(hypermodel, max_trials=max_trials, num_initial_points=points, **common)
    return TUNERS[kind](hypermodel, max_trials=max_trials, **common)


def check_project(project: Path, record: dict[str, Any]) -> None:
    """Refuse to resume a project that searched something else; else record what this one searches."""
    path = project / SEARCH_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(
                f"Project {project} was started with a different {', '.join(changed)}; resume it with the same "
                "flags, start a new --project, or pass --overwrite to discard it"
            )
        return
    project.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ results


def trial_runs(project: str | os.PathLike) -> dict[str, int]:
    """How many times each trial was started (more than once: its process died and it was run again)."""
    runs: dict[str, int] = {}
    for event in read_events(project):
        if event.get("event") == "start":
            runs[event["trial"]] = runs.get(event["trial"], 0) + 1
    return runs


def failure_reason(message: str | None) -> str:
    """A failed trial's reason in one line: the last line of KerasTuner's message (a traceback's is the error)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def results(tuner: kt.Tuner) -> list[dict[str, Any]]:
    """One row per trial, in trial order: hyperparameters, score, seconds, tuner, runs, failure reason."""
    runs = trial_runs(tuner.project_dir)
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        sidecar_path = Path(tuner.project_dir) / f"trial_{trial_id}" / SIDECAR
        sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
        _, _, values = tuner.hypermodel.draw(trial.hyperparameters.copy())  # effective depth per model
        rows.append(
            {
                "trial": trial_id,
                "status": trial.status,
                **values,
                "epochs": trial_epochs(trial, tuner.hypermodel.epochs),
                "score": trial.score,
                "seconds": sidecar.get("seconds"),
                "tuner": sidecar.get("tuner"),
                "runs": runs.get(trial_id, 0),
                "reason": failure_reason(trial.message) if trial.status in ("FAILED", "INVALID") else "",
            }
        )
    return rows


def summary(rows: list[dict[str, Any]], objective: kt.Objective) -> list[str]:
    """The end of a search in a few lines: trials completed, failed (and why), re-run after their process died,
    still running (only when a search was cut short), and the best trial."""
    by_status: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    completed = by_status.get("COMPLETED", [])
    failed = by_status.get("FAILED", []) + by_status.get("INVALID", [])
    rerun = [r for r in rows if (r["runs"] or 0) > 1]
    others = {k: len(v) for k, v in sorted(by_status.items()) if k not in ("COMPLETED", "FAILED", "INVALID")}
    head = f"summary: {len(rows)} trials: {len(completed)} completed, {len(failed)} failed"
    head += f", {len(rerun)} re-run after their process died"
    head += "".join(f", {n} {status.lower()}" for status, n in others.items())
    lines = [head]
    for r in rerun:
        lines.append(f"  re-run: trial {r['trial']} started {r['runs']} times, {r['status'].lower()}")
    for r in failed:
        lines.append(f"  failed: trial {r['trial']}: {r['reason'] or 'no reason recorded'}")
    scored = [r for r in completed if r["score"] is not None]
    if scored:
        pick = max if objective.direction == "max" else min
        best = pick(scored, key=lambda r: r["score"])
        lines.append(f"  best: trial {best['trial']}, {objective.name} {best['score']:.4g} ({best['model']})")
    else:
        lines.append("  best: none (no trial completed)")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict[str, Any]], objective: str) -> str:
    header = [c if c != "score" else objective for c in COLUMNS]
    cells = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    for row in cells:  # the reason last, cut to a width
        if len(row[-1]) > REASON_WIDTH:
            row[-1] = row[-1][: REASON_WIDTH - 3] + "..."
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], objective: str) -> str:
    header = [c if c != "score" else objective for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(r[c]).replace("|", "\\|") for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot(rows: list[dict[str, Any]], objective: kt.Objective, title: str) -> bytes:
    """PNG: score against depth, width (log axis) and clipnorm, one colour per model family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["score"] is not None]
    clip_levels = sorted({r["clipnorm"] for r in done}, key=lambda c: -1.0 if c == "none" else float(c))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for family in sorted({r["model"] for r in done}):
        mine = [r for r in done if r["model"] == family]
        scores = [r["score"] for r in mine]
        axes[0].scatter([r["num_layers"] for r in mine], scores, label=family, alpha=0.8)
        axes[1].scatter([r["units"] for r in mine], scores, label=family, alpha=0.8)
        axes[2].scatter([clip_levels.index(r["clipnorm"]) for r in mine], scores, label=family, alpha=0.8)
    axes[0].set_xlabel("num_layers (depth)")
    axes[1].set_xlabel("units (width)")
    axes[1].set_xscale("log", base=2)
    axes[2].set_xlabel("clipnorm")
    axes[2].set_xticks(range(len(clip_levels)), clip_levels)
    axes[0].set_ylabel(f"{objective.name} ({objective.direction} is better)")
    for ax in axes:
        ax.grid(alpha=0.3)
    if done:
        axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_results(
    tuner: kt.Tuner, objective: kt.Objective, title: str, *, show: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Write ``results.csv``, ``results.md`` (the table and the :func:`summary`) and ``results.png`` into the
    project (and print the table and the summary)."""
    rows = results(tuner)
    project = Path(tuner.project_dir)
    paths = {"csv": project / "results.csv", "markdown": project / "results.md", "plot": project / "results.png"}
    lines = summary(rows, objective)
    paths["csv"].write_text(csv_table(rows))
    listed = "\n".join(f"- {line.strip()}" for line in lines[1:])
    paths["markdown"].write_text(
        f"# {title}\n\n{markdown_table(rows, objective.name)}\n{lines[0][0].upper()}{lines[0][1:]}\n\n{listed}\n"
    )
    paths["plot"].write_bytes(plot(rows, objective, title))
    if show:
        print(format_table(rows, objective.name))
        print("\n".join(lines))
    return rows, paths


# ------------------------------------------------------------------------------------ export


def best_trial(tuner: kt.Tuner):
    completed = [
        t
        for t in tuner.oracle.get_best_trials(len(tuner.oracle.trials) or 1)
        if t.status == "COMPLETED" and t.score is not None
    ]
    if not completed:
        raise ValueError(f"No trial of {tuner.project_dir} completed; see the trial messages in its trial_*/trial.json")
    return completed[0]


def export_best(tuner: kt.Tuner, hypermodel: SeqzooHyperModel) -> Path | None:
    """Export the best trial's model (its best-epoch checkpoint) with its hyperparameters in the card,
    under the options' ``saved_models`` root; None when the options say ``export=False``.

    Uses the task's ``export(model, data, options, metrics, card=)`` when the module
    offers one, else :func:`tasks.export.export` with the task's ``endpoints(model, spec)``
    if it has them, else the model's forward pass as ``serve``.
    """
    from tasks.export import export, saved_models_root

    task, data, options = hypermodel.task, hypermodel.data, hypermodel.options
    if not options.export:
        return None
    trial = best_trial(tuner)
    model = tuner.load_model(trial)
    config, compile_kwargs, values = hypermodel.draw(trial.hyperparameters.copy())
    metrics = {hypermodel.objective.name: trial.score}
    card = {
        "hyperparameters": {
            **compile_kwargs,
            **values,
            "epochs": trial_epochs(trial, hypermodel.epochs),
            "batch_size": options.batch_size,
            "seed": options.seed,
        },
        "tuning": {
            "project": str(Path(tuner.project_dir).resolve()),
            "trial": trial.trial_id,
            "best_step": trial.best_step,
            "objective": [hypermodel.objective.name, hypermodel.objective.direction],
            "score": trial.score,
            "trials": len(tuner.oracle.trials),
            "values": dict(trial.hyperparameters.values),
        },
        "metrics": metrics,
    }
    if hasattr(task, "export"):
        return Path(task.export(model, data, options, metrics, card=card))
    card["data"] = getattr(data, "provenance", {})
    spec = getattr(data, "spec", None)
    if hasattr(spec, "to_card"):
        card["spec"] = spec.to_card()
    endpoints = task.endpoints(model, spec) if hasattr(task, "endpoints") else None
    return export(
        model,
        task=task.TASK,
        config=config,
        root=saved_models_root(options.saved_models),
        endpoints=endpoints,
        card=card,
    )


# ------------------------------------------------------------------------------------ a search from Python


# Options that do not change what a trial trains: a resume may change them.
NOT_SEARCH_STATE = ("export", "saved_models", "runs", "run_name", "resume", "strategy")


def task_record(options: TaskOptions) -> dict[str, Any]:
    """The task options a project was searched with (JSON), for the resume check."""
    fixed = {k: v for k, v in sorted(options.to_dict().items()) if k not in NOT_SEARCH_STATE}
    return json.loads(json.dumps(fixed, default=str))


def parse_objective(objective: str | kt.Objective | None, task: ModuleType) -> kt.Objective:
    """``None`` (the task's ``OBJECTIVE``), a ``keras_tuner.Objective``, or ``"NAME[:min|max]"`` (direction
    default: the task's for its own metric, else min for a loss and max for anything else)."""
    if objective is None:
        return kt.Objective(*task.OBJECTIVE)
    if isinstance(objective, kt.Objective):
        return objective
    name, _, direction = objective.partition(":")
    if not direction:
        direction = task.OBJECTIVE[1] if name == task.OBJECTIVE[0] else ("min" if name.endswith("loss") else "max")
    if direction not in ("min", "max") or not name:
        raise ValueError(f"--objective {objective!r}: expected NAME[:min|max], e.g. val_loss:min")
    return kt.Objective(name, direction)


# What to do when another search works in the project folder.
BUSY = "Wait for it to finish, or search into another folder (project= in tuning.tune, --project)"


def default_project(task: ModuleType, tuner: str) -> Path:
    return Path("runs") / "tune" / f"{task.TASK}-{tuner}"


def prepare(
    task: ModuleType,
    options: TaskOptions,
    *,
    space: SearchSpace,
    tuner: str,
    max_trials: int,
    project: Path,
    objective: kt.Objective,
    initial_points: int | None = None,
    verbose: int | str = "auto",
    check_objective: bool = True,
) -> kt.Tuner:
    """Load the task's data and make the tuner over a :class:`SeqzooHyperModel` in ``project`` (resumed
    when it searched the same task, options and space; refused when it searched something else).

    ``check_objective=False`` skips the probe that the task logs ``objective`` (a worker trusts its chief).
    """
    from tasks.common import set_seed

    check_options(task, options)
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief":  # workers share their chief's project
        files.lock_folder(project, BUSY)
    set_seed(options.seed)
    data = task.load_data(options)
    hypermodel = SeqzooHyperModel(task, data, options, space, objective, verbose=verbose)
    if check_objective:
        hypermodel.check_objective()
    made = make_tuner(
        tuner, hypermodel, project=project, max_trials=max_trials, seed=options.seed, num_initial_points=initial_points
    )
    check_project(
        project,
        {
            "task": task.TASK,
            "tuner": tuner,
            "objective": [objective.name, objective.direction],
            "space": space.to_dict(),
            "task_options": task_record(options),
        },
    )
    return made


@dataclass
class SearchResult:
    """What :func:`tune` returns.

    Attributes:
        tuner: the KerasTuner tuner (``tuner.oracle.trials``, ``tuner.get_best_models()``, ...).
        rows: the results table, one row per trial (hyperparameters, score, epochs, seconds, tuner, runs:
            how many times it was started, reason: why it failed).
        paths: ``results.csv``, ``results.md`` and ``results.png`` in the project.
        export: the best model's export folder, or None with ``export=False`` or when no trial completed.
        summary: the lines printed at the end: completed, failed (and why), re-run, best trial.
    """

    tuner: kt.Tuner
    rows: list[dict[str, Any]]
    paths: dict[str, Path]
    export: Path | None
    summary: list[str] = field(default_factory=list)

    @property
    def best(self):
        """The best completed trial (``.hyperparameters.values``, ``.score``)."""
        return best_trial(self.tuner)


def finish(tuner: kt.Tuner, kind: str, *, show: bool = True) -> SearchResult:
    """The results table (printed with ``show``) and plot, and the best model's export."""
    hypermodel = tuner.hypermodel
    title = f"seqzoo tune {hypermodel.task.TASK}: {kind}, {len(tuner.oracle.trials)} trials"
    rows, paths = write_results(tuner, hypermodel.objective, title, show=show)
    completed = any(r["status"] == "COMPLETED" and r["score"] is not None for r in rows)
    export = export_best(tuner, hypermodel) if completed else None
    return SearchResult(tuner=tuner, rows=rows, paths=paths, export=export, summary=summary(rows, hypermodel.objective))


def tune(
    task: str | ModuleType,
    options: TaskOptions | None = None,
    *,
    space: SearchSpace | None = None,
    tuner: str = "random",
    max_trials: int = 10,
    project: str | os.PathLike | None = None,
    objective: str | kt.Objective | None = None,
    overwrite: bool = False,
    initial_points: int | None = None,
    verbose: int | str = "auto",
) -> SearchResult:
    """Search ``task``'s zoo models in this process, as ``seqzoo tune`` does without ``--chief``/``--worker``::

        from tasks import sequence_classification as classify
        from tuning import SearchSpace, tune
        result = tune("classify", classify.Options.quick(), space=SearchSpace(models=("gru", "lstm")), max_trials=4)

    Args:
        task: a task name (``tasks.TASKS``), a module path implementing the task API, or the module.
        options: the task's ``Options`` (default: ``task.Options()``); they fix what is not searched, and
            ``options.epochs`` is the epochs per trial (Hyperband: its largest bracket).
        space: what is searched (default: :class:`SearchSpace`'s defaults).
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        project: the project folder (default ``runs/tune/TASK-TUNER``); an existing one resumes.
        objective: ``"NAME[:min|max]"`` or a ``keras_tuner.Objective`` (default: the task's ``OBJECTIVE``).
        overwrite: discard an existing ``project`` instead of resuming it.
        initial_points: bayesian only: random trials before the Gaussian process proposes any.
        verbose: Keras fit verbosity per trial (0 also leaves the results table unprinted).
    """
    module = task_module(task)
    options = module.Options() if options is None else options
    check_options(module, options)
    project = Path(project) if project is not None else default_project(module, tuner)
    if overwrite and project.exists():
        shutil.rmtree(project)
    made = prepare(
        module,
        options,
        space=space or SearchSpace(),
        tuner=tuner,
        max_trials=max_trials,
        project=project,
        objective=parse_objective(objective, module),
        initial_points=initial_points,
        verbose=verbose,
    )
    made.search(verbose=verbose)
    return finish(made, tuner, show=verbose != 0)
