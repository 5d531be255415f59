"""``seqzoo tune TASK ...``: a KerasTuner search over a task's zoo models.

The tuner's own flags come first in --help; every other flag is the task's own
(``seqzoo train TASK --help``) and fixes what is not searched: data set,
epochs per trial, batch size, ``--quick``, ``--saved-models`` ...
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.cli import TRAIN_TASKS
from tasks.common import Formatter, quiet_tensorflow
from tuning.distributed import LOOPBACK
from tuning.space import DEFAULT_CLIPNORMS, DEFAULT_MODELS, DEFAULT_RANGES, SEARCHED

# Task flags that set a searched hyperparameter: use --pin instead.
SEARCHED_FLAGS = {"--model": "model", "--num-layers": "num_layers", "--units": "units", "--dropout": "dropout",
                  "--learning-rate": "learning_rate", "--clipnorm": "clipnorm"}

EPILOG = f"""searched: {", ".join(SEARCHED)}
  defaults: --models {",".join(DEFAULT_MODELS)}; --clipnorms {",".join(DEFAULT_CLIPNORMS)};
  ranges {"; ".join(f"{k}={lo}:{hi}" for k, (lo, hi) in DEFAULT_RANGES.items())}
  (units: powers of two from MIN; learning_rate: log scale; dropout: steps of 0.1)
  num_layers respects each model's depth (lstm: 1, stacked_lstm: >= 2) through conditional scopes.

examples:
  seqzoo tune classify --max-trials 8 --quick
  seqzoo tune classify --tuner bayesian --models gru,stacked_lstm --pin units=64 --range num_layers=1:3
  seqzoo tune classify --workers 2 --max-trials 8 --quick       # 1 chief + 2 workers on 127.0.0.1
  seqzoo tune classify --chief 127.0.0.1:8000 ...   and   seqzoo tune classify --worker 127.0.0.1:8000 ...

The chief's gRPC has no TLS or authentication: it binds to 127.0.0.1 unless you pass another HOST.
A killed search resumes when started again with the same --project (finished trials are kept).
"""


def build_parser(prog: str = "seqzoo tune") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=Formatter, add_help=False, allow_abbrev=False)
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="|".join(TRAIN_TASKS) + ", or the import path of a module implementing the task API")
    p.add_argument("-h", "--help", action="store_true", help="show this help (and the task's flags) and exit")
    s = p.add_argument_group("search")
    s.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random", help="search algorithm")
    s.add_argument("--max-trials", type=int, default=10, help="trials to run (random, bayesian; hyperband: ignored, "
                                                              "its budget is --epochs)")
    s.add_argument("--initial-points", type=int, default=None, metavar="N",
                   help="bayesian: random trials before the Gaussian process proposes any (default: half of "
                        "--max-trials, at least 2, at most KerasTuner's 3 per searched hyperparameter)")
    s.add_argument("--project", default=None, help="project folder (default: runs/tune/TASK-TUNER); reused to resume")
    s.add_argument("--overwrite", action="store_true", help="discard an existing --project instead of resuming it")
    s.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated zoo models to search")
    s.add_argument("--clipnorms", default=",".join(DEFAULT_CLIPNORMS), help="comma-separated clipnorm values "
                                                                             "('none' = no clipping)")
    s.add_argument("--pin", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a searched hyperparameter, e.g. --pin units=64 (repeatable)")
    s.add_argument("--range", action="append", default=[], metavar="NAME=MIN:MAX",
                   help="narrow a numeric range, e.g. --range units=16:64 (repeatable)")
    s.add_argument("--objective", default=None, metavar="NAME[:min|max]",
                   help="metric to optimize (default: the task's, e.g. val_accuracy:max for classify)")
    s.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity per trial")
    d = p.add_argument_group("distributed (KerasTuner chief/worker over gRPC, no TLS)")
    role = d.add_mutually_exclusive_group()
    role.add_argument("--workers", type=int, default=None, help="launch 1 chief + N workers on this machine")
    role.add_argument("--chief", default=None, metavar="HOST:PORT", help="run the oracle here, bound to HOST:PORT")
    role.add_argument("--worker", default=None, metavar="HOST:PORT", help="run trials for the chief at HOST:PORT")
    d.add_argument("--host", default=LOOPBACK, help="address the --workers launcher binds the chief to")
    d.add_argument("--tuner-id", default=None, help="this worker's id (default: worker-PID)")
    d.add_argument("--expect-workers", type=int, default=0,
                   help="chief: hand out no trial before this many workers asked (or 120 s passed)")
    d.add_argument("--timeout", type=float, default=3600, help="chief/launcher: give up after this many seconds")
    d.add_argument("--connect-timeout", type=float, default=30, help="worker: seconds to wait for the chief")
    d.add_argument("--rpc-timeout", type=float, default=300, help="worker: seconds per call to the chief")
    return p


def import_task(name: str):
    """The task module for a ``seqzoo train`` task name or a module path implementing the task API."""
    from tuning.hypermodel import check_task_module

    if name in TRAIN_TASKS:
        module = importlib.import_module(TRAIN_TASKS[name][0])
    else:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ValueError(f"Unknown task {name!r}; tasks: {', '.join(TRAIN_TASKS)} (or the import path of a "
                             "module implementing the task API)") from None
    check_task_module(module)
    return module


def parse_objective(text: str | None, task):
    import keras_tuner as kt

    if text is None:
        return kt.Objective(*task.OBJECTIVE)
    name, _, direction = text.partition(":")
    if not direction:
        direction = task.OBJECTIVE[1] if name == task.OBJECTIVE[0] else ("min" if name.endswith("loss") else "max")
    if direction not in ("min", "max") or not name:
        raise ValueError(f"--objective {text!r}: expected NAME[:min|max], e.g. val_loss:min")
    return kt.Objective(name, direction)


# Task flags that do not change what a trial trains: a resume may change them.
NOT_SEARCH_STATE = ("no_export", "saved_models", "runs", "strategy")


def task_record(task_args: argparse.Namespace) -> dict:
    """The task flags a project was searched with (JSON), for the resume check."""
    import json

    fixed = {k: v for k, v in sorted(vars(task_args).items()) if k not in NOT_SEARCH_STATE}
    return json.loads(json.dumps(fixed, default=str))


def _child_argv(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The flags a launched chief/worker gets: this search's, without the launcher's own."""
    out = [args.task, "--tuner", args.tuner, "--max-trials", str(args.max_trials), "--project", str(args.project),
           "--models", args.models, "--clipnorms", args.clipnorms, "--verbose", str(args.verbose),
           "--connect-timeout", str(args.connect_timeout), "--rpc-timeout", str(args.rpc_timeout)]
    out += [f"--pin={v}" for v in args.pin] + [f"--range={v}" for v in args.range]
    if args.objective:
        out += ["--objective", args.objective]
    if args.initial_points is not None:
        out += ["--initial-points", str(args.initial_points)]
    return out + rest


def run(args: argparse.Namespace, rest: list[str], prog: str) -> int:
    from tuning.distributed import check_port_free, launch, parse_address, set_environment, wait_for_chief
    from tuning.space import SearchSpace, parse_pins, parse_ranges, split_list

    for token in rest:
        flag = token.split("=", 1)[0]
        if flag in SEARCHED_FLAGS:
            name = SEARCHED_FLAGS[flag]
            raise ValueError(f"{flag} is searched by the tuner; pin it with --pin {name}=VALUE or narrow it with "
                             f"{'--models' if name == 'model' else '--clipnorms' if name == 'clipnorm' else '--range'}")
    space = SearchSpace(models=tuple(split_list(args.models)), clipnorms=tuple(split_list(args.clipnorms)),
                        ranges=parse_ranges(args.range), pins=parse_pins(args.pin))
    for note in space.notes:
        print(f"note: {note}")
    task = import_task(args.task)
    project = Path(args.project or Path("runs") / "tune" / f"{task.TASK}-{args.tuner}")
    args.project = project
    if args.overwrite and (args.chief or args.worker):
        raise ValueError("--overwrite with --chief/--worker would delete a shared project; discard it beforehand")
    if args.overwrite and project.exists():
        shutil.rmtree(project)
    if args.workers is not None:
        if args.host != LOOPBACK:
            print(f"warning: the chief's gRPC on {args.host} has no TLS or authentication", file=sys.stderr)
        return launch(_child_argv(args, rest), args.workers, args.host, project, args.timeout)

    task_args = task.build_parser(f"{prog} {args.task}").parse_args(rest)
    if getattr(task_args, "strategy", "none") != "none":
        raise ValueError(f"--strategy {task_args.strategy} is for seqzoo train; seqzoo tune trains each trial on "
                         "one device (spread trials over processes with --workers N instead)")
    objective = parse_objective(args.objective, task)
    stray = sorted(k for k in os.environ if k.startswith("KERASTUNER_"))
    if stray and not (args.chief or args.worker):
        raise ValueError(f"{', '.join(stray)} set in the environment would make this search a KerasTuner chief or "
                         "worker; unset them and use --chief/--worker (or --workers N)")
    if args.chief:
        host, port = parse_address(args.chief, "--chief")
        check_port_free(host, port)  # before the data is loaded: fail fast
        set_environment("chief", host, port)
    elif args.worker:
        host, port = parse_address(args.worker, "--worker")
        tuner_id = args.tuner_id or f"worker-{os.getpid()}"
        if "chief" in tuner_id:
            raise ValueError(f"--tuner-id {tuner_id!r} must not contain 'chief' (KerasTuner reads that as the chief)")
        set_environment(tuner_id, host, port)
        wait_for_chief(host, port, args.connect_timeout, args.rpc_timeout)

    from tasks.common import set_seed
    from tuning.hypermodel import SeqzooHyperModel
    from tuning.search import check_project, export_best, make_tuner, write_results

    set_seed(task_args.seed)
    data = task.load_data(task_args)
    hypermodel = SeqzooHyperModel(task, data, task_args, space, objective, verbose=args.verbose)
    if not args.worker:
        hypermodel.check_objective()
    tuner = make_tuner(args.tuner, hypermodel, project=project, max_trials=args.max_trials, seed=task_args.seed,
                       num_initial_points=args.initial_points)
    check_project(project, {"task": task.TASK, "tuner": args.tuner, "objective": [objective.name, objective.direction],
                            "space": space.to_dict(), "task_args": task_record(task_args)})
    print(f"search: {args.tuner} over {', '.join(space.searched())}; objective {objective.name} ({objective.direction});"
          f" project {project}")
    if args.tuner == "bayesian":
        points = tuner.oracle.num_initial_points
        print(f"bayesian: the first {points} completed trials are random, then the Gaussian process proposes"
              + ("" if points < args.max_trials else f" (never, with --max-trials {args.max_trials})"))
    if args.chief:
        from tuning.distributed import serve_chief

        serve_chief(tuner, host, port, expect_workers=args.expect_workers, timeout_s=args.timeout)
    else:
        tuner.search(verbose=args.verbose)
        if args.worker:
            print(f"{tuner.tuner_id}: no trials left; done")
            return 0
    title = f"seqzoo tune {task.TASK}: {args.tuner}, {len(tuner.oracle.trials)} trials"
    _, paths = write_results(tuner, objective, title)
    print("results: " + ", ".join(str(p) for p in paths.values()))
    if not getattr(task_args, "no_export", False):
        print(f"export: {export_best(tuner, hypermodel, getattr(task_args, 'saved_models', None))}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo tune") -> int:
    quiet_tensorflow()
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.help or args.task is None:
        parser.print_help()
        if args.task is not None:
            print(f"\n--- the task's own flags (seqzoo train {args.task}); the searched ones are set by --pin/--range ---")
            import_task(args.task).build_parser(f"{prog} {args.task}").print_help()
        return 0 if args.help else 2
    # --chief/--worker set KerasTuner's variables for this search only; a later search in the same
    # process (tests, notebooks) must not inherit its role.
    saved = {k: v for k, v in os.environ.items() if k.startswith("KERASTUNER_")}
    try:
        return int(run(args, rest, prog) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        import grpc

        if isinstance(exc, grpc.RpcError):
            print(f"{prog}: error: lost the tuning chief ({exc.code().name}: {exc.details()})", file=sys.stderr)
            return 1
        raise
    finally:
        for key in [k for k in os.environ if k.startswith("KERASTUNER_")]:
            del os.environ[key]
        os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())
