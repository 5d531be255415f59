"""``seqzoo tune TASK ...``: a KerasTuner search over a task's zoo models.

The tuner's own flags come first in --help; every other flag is the task's own
(``seqzoo train TASK --help``, generated from its ``Options``) and fixes what is
not searched: data set, epochs per trial, batch size, ``--quick``, ``--saved-models`` ...
From Python, :func:`tuning.tune` runs the same search with the task's ``Options``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks import TASKS
from tasks import get as get_task
from tasks.options import Formatter, describe_error, flag_of, options_from_args
from tasks.options import build_parser as build_options_parser
from tasks.terminal import quiet_tensorflow
from tuning.distributed import EXIT_LOST_CHIEF, EXIT_STATUSES, EXIT_STOPPED, LOOPBACK
from tuning.space import DEFAULT_CLIPNORMS, DEFAULT_MODELS, DEFAULT_RANGES, SEARCHED
from zoo.errors import SeqzooError

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

when a process dies:
  --workers N restarts a dead worker with its tuner id (one line: which worker, its exit status or
  signal, its log) and the chief hands it back its unfinished trial; after more than
  --max-worker-deaths deaths the search is stopped. Workers send the chief a heartbeat every
  --heartbeat s; the chief marks the trial of a worker silent for --worker-timeout s FAILED and
  ends the search without it. A worker whose chief does not answer for --connect-timeout s exits
  (one line), and so does the launcher when its chief dies. Every search ends with a summary:
  trials completed, failed (and why), re-run after their process died, the best trial.

exit status:
"""
EPILOG += "".join(f"  {code}  {text}\n" for code, text in EXIT_STATUSES.items())


def build_parser(prog: str = "seqzoo tune") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=Formatter,
        add_help=False,
        allow_abbrev=False,
    )
    p.add_argument(
        "task",
        nargs="?",
        metavar="TASK",
        help="|".join(TASKS) + ", or the import path of a module implementing the task API",
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help (and the task's flags) and exit")
    s = p.add_argument_group("search")
    s.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random", help="search algorithm")
    s.add_argument(
        "--max-trials",
        type=int,
        default=10,
        help="trials to run (random, bayesian; hyperband: ignored, its budget is --epochs)",
    )
    s.add_argument(
        "--initial-points",
        type=int,
        default=None,
        metavar="N",
        help="bayesian: random trials before the Gaussian process proposes any (default: half of "
        "--max-trials, at least 2, at most KerasTuner's 3 per searched hyperparameter)",
    )
    s.add_argument("--project", default=None, help="project folder (default: runs/tune/TASK-TUNER); reused to resume")
    s.add_argument("--overwrite", action="store_true", help="discard an existing --project instead of resuming it")
    s.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated zoo models to search")
    s.add_argument(
        "--clipnorms",
        default=",".join(DEFAULT_CLIPNORMS),
        help="comma-separated clipnorm values ('none' = no clipping)",
    )
    s.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a searched hyperparameter, e.g. --pin units=64 (repeatable)",
    )
    s.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="NAME=MIN:MAX",
        help="narrow a numeric range, e.g. --range units=16:64 (repeatable)",
    )
    s.add_argument(
        "--objective",
        default=None,
        metavar="NAME[:min|max]",
        help="metric to optimize (default: the task's, e.g. val_accuracy:max for classify)",
    )
    s.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity per trial")
    d = p.add_argument_group("distributed (KerasTuner chief/worker over gRPC, no TLS)")
    role = d.add_mutually_exclusive_group()
    role.add_argument("--workers", type=int, default=None, help="launch 1 chief + N workers on this machine")
    role.add_argument("--chief", default=None, metavar="HOST:PORT", help="run the oracle here, bound to HOST:PORT")
    role.add_argument("--worker", default=None, metavar="HOST:PORT", help="run trials for the chief at HOST:PORT")
    d.add_argument("--host", default=LOOPBACK, help="address the --workers launcher binds the chief to")
    d.add_argument("--tuner-id", default=None, help="this worker's id (default: worker-PID)")
    d.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        help="chief: hand out no trial before this many workers asked (or 120 s passed)",
    )
    d.add_argument("--timeout", type=float, default=3600, help="chief/launcher: give up after this many seconds")
    d.add_argument(
        "--connect-timeout",
        type=float,
        default=30,
        help="worker: seconds to wait for the chief, at the start and whenever it stops answering",
    )
    d.add_argument(
        "--heartbeat",
        type=float,
        default=5,
        metavar="S",
        help="worker: tell the chief every S seconds it is alive (chief: checks --worker-timeout against it)",
    )
    d.add_argument(
        "--worker-timeout",
        type=float,
        default=60,
        metavar="S",
        help="chief: a worker silent for S seconds (no heartbeat, no request) is given up on: its trial is FAILED",
    )
    d.add_argument(
        "--max-worker-deaths",
        type=int,
        default=3,
        metavar="N",
        help="--workers: restart dead workers, up to N deaths in all; one more stops the search (exit status 3)",
    )
    d.add_argument("--rpc-timeout", type=float, default=300, help="worker: seconds per call to the chief")
    return p


def task_parser(task, prog: str, name: str) -> argparse.ArgumentParser:
    """The task's own flags (``seqzoo train TASK``'s), generated from its ``Options``."""
    return build_options_parser(task.Options, f"{prog} {name}")


def task_options(task, rest: list[str], prog: str, name: str):
    """The task's ``Options`` from its flags in ``rest`` (``--quick`` applies its preset; flags given win).
    A flag that sets a searched hyperparameter is refused: the tuner draws it."""
    given = task_parser(task, prog, name).parse_args(rest)
    for field in dataclasses.fields(task.Options):  # after parsing, so abbreviated flags are caught too
        if field.name in SEARCHED and hasattr(given, field.name):
            flag, target = flag_of(field), field.name
            way = "--models" if target == "model" else "--clipnorms" if target == "clipnorm" else "--range"
            raise ValueError(
                f"{flag} is searched by the tuner; pin it with --pin {target}=VALUE or narrow it with {way}"
            )
    return options_from_args(task.Options, given)


def _child_argv(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The flags a launched chief/worker gets: this search's, without the launcher's own."""
    out = [
        args.task,
        "--tuner",
        args.tuner,
        "--max-trials",
        str(args.max_trials),
        "--project",
        str(args.project),
        "--models",
        args.models,
        "--clipnorms",
        args.clipnorms,
        "--verbose",
        str(args.verbose),
        "--connect-timeout",
        str(args.connect_timeout),
        "--rpc-timeout",
        str(args.rpc_timeout),
        "--heartbeat",
        str(args.heartbeat),
        "--worker-timeout",
        str(args.worker_timeout),
    ]
    out += [f"--pin={v}" for v in args.pin] + [f"--range={v}" for v in args.range]
    if args.objective:
        out += ["--objective", args.objective]
    if args.initial_points is not None:
        out += ["--initial-points", str(args.initial_points)]
    return out + rest


def check_timeouts(args: argparse.Namespace) -> None:
    """The distributed timings must be positive, and a worker's heartbeat well within the chief's
    --worker-timeout, or a live worker could be given up on."""
    for flag, value in (
        ("--timeout", args.timeout),
        ("--connect-timeout", args.connect_timeout),
        ("--rpc-timeout", args.rpc_timeout),
        ("--heartbeat", args.heartbeat),
        ("--worker-timeout", args.worker_timeout),
    ):
        if not value > 0:
            raise ValueError(f"{flag} must be a positive number of seconds, got {value:g}")
    if args.worker_timeout < 3 * args.heartbeat:
        raise ValueError(
            f"--worker-timeout {args.worker_timeout:g} must be at least 3 x --heartbeat ({3 * args.heartbeat:g} s), "
            "or a live worker could be given up on between two heartbeats"
        )
    if args.max_worker_deaths < 0:
        raise ValueError(f"--max-worker-deaths must be >= 0, got {args.max_worker_deaths}")


def run(args: argparse.Namespace, task, rest: list[str], prog: str) -> int:
    from tuning.distributed import (
        Heartbeat,
        check_port_free,
        launch,
        parse_address,
        set_environment,
        wait_for_chief,
    )
    from tuning.hypermodel import check_options
    from tuning.space import SearchSpace, parse_pins, parse_ranges, split_list

    space = SearchSpace(
        models=tuple(split_list(args.models)),
        clipnorms=tuple(split_list(args.clipnorms)),
        ranges=parse_ranges(args.range),
        pins=parse_pins(args.pin),
    )
    for note in space.notes:
        print(f"note: {note}")
    options = task_options(task, rest, prog, args.task)
    check_options(task, options)
    project = Path(args.project or Path("runs") / "tune" / f"{task.TASK}-{args.tuner}")
    args.project = project
    if args.overwrite and (args.chief or args.worker):
        raise ValueError("--overwrite with --chief/--worker would delete a shared project; discard it beforehand")
    check_timeouts(args)
    if args.overwrite and project.exists():
        shutil.rmtree(project)
    if args.workers is not None:
        if args.host != LOOPBACK:
            print(f"warning: the chief's gRPC on {args.host} has no TLS or authentication", file=sys.stderr)
        return launch(
            _child_argv(args, rest),
            args.workers,
            args.host,
            project,
            args.timeout,
            max_deaths=args.max_worker_deaths,
            connect_timeout_s=args.connect_timeout,
        )

    from tuning.search import finish, parse_objective, prepare

    objective = parse_objective(args.objective, task)
    heartbeat = None
    stray = sorted(k for k in os.environ if k.startswith("KERASTUNER_"))
    if stray and not (args.chief or args.worker):
        raise ValueError(
            f"{', '.join(stray)} set in the environment would make this search a KerasTuner chief or "
            "worker; unset them and use --chief/--worker (or --workers N)"
        )
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
        heartbeat = Heartbeat(host, port, tuner_id, interval=args.heartbeat, lost_after=args.connect_timeout)
        heartbeat.start()  # before the data is loaded: the chief hears from this worker from now on

    try:
        # The same preparation and results as tuning.tune; only who runs the trials differs here.
        tuner = prepare(
            task,
            options,
            space=space,
            tuner=args.tuner,
            max_trials=args.max_trials,
            project=project,
            objective=objective,
            initial_points=args.initial_points,
            verbose=args.verbose,
            check_objective=not args.worker,
        )
        print(
            f"search: {args.tuner} over {', '.join(space.searched())}; objective {objective.name} ({objective.direction});"
            f" project {project}"
        )
        if args.tuner == "bayesian":
            points = tuner.oracle.num_initial_points
            print(
                f"bayesian: the first {points} completed trials are random, then the Gaussian process proposes"
                + ("" if points < args.max_trials else f" (never, with --max-trials {args.max_trials})")
            )
        stopped = None
        if args.chief:
            from tuning.distributed import serve_chief

            stopped = serve_chief(
                tuner,
                host,
                port,
                expect_workers=args.expect_workers,
                timeout_s=args.timeout,
                worker_timeout_s=args.worker_timeout,
            )
        else:
            tuner.search(verbose=args.verbose)
            if args.worker:
                print(f"{tuner.tuner_id}: no trials left; done")
                return 0
        result = finish(tuner, args.tuner)
        print("results: " + ", ".join(str(p) for p in result.paths.values()))
        if result.export is not None:
            print(f"export: {result.export}")
        if stopped is not None:
            print(f"search stopped: {stopped}; exit status {EXIT_STOPPED}", file=sys.stderr)
            return EXIT_STOPPED
        return 0
    finally:
        if heartbeat is not None:  # an in-process worker (tests, notebooks) must not outlive its search
            heartbeat.stop()


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo tune") -> int:
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    help_only = args.help or args.task is None
    if not help_only:
        quiet_tensorflow()  # after parsing: --help never imports TensorFlow (nor the hypermodel, which imports Keras)

    options_cls = None  # once the task is known, an error about one of its fields names the flag
    try:
        if help_only:
            parser.print_help()
            if args.task is not None:
                print(
                    f"\n--- the task's own flags (seqzoo train {args.task}); the searched ones are set by "
                    "--pin/--range ---"
                )
                if args.task in TASKS:
                    task = get_task(args.task)
                else:  # a module path implementing the task API, checked as a search checks it
                    from tuning.hypermodel import task_module

                    task = task_module(args.task)
                task_parser(task, prog, args.task).print_help()
            return 0 if args.help else 2
        from tuning.hypermodel import task_module

        task = task_module(args.task)
        options_cls = task.Options
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    # --chief/--worker set KerasTuner's variables for this search only; a later search in the same
    # process (tests, notebooks) must not inherit its role.
    saved = {k: v for k, v in os.environ.items() if k.startswith("KERASTUNER_")}
    try:
        return int(run(args, task, rest, prog) or 0)
    except SeqzooError as exc:
        print(f"{prog}: error: {describe_error(exc, options_cls)}", file=sys.stderr)
        return 2
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
            print(
                f"{prog}: error: lost the tuning chief ({exc.code().name}: {exc.details()}); exit status "
                f"{EXIT_LOST_CHIEF}",
                file=sys.stderr,
            )
            return EXIT_LOST_CHIEF
        raise
    finally:
        for key in [k for k in os.environ if k.startswith("KERASTUNER_")]:
            del os.environ[key]
        os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())
