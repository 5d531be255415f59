"""The ``seqzoo`` command. Sub-commands load their modules lazily, so
``seqzoo --help`` answers without importing TensorFlow."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tasks import TASKS as TRAIN_TASKS
from tasks.terminal import SHOW_LOGS, quiet_tensorflow

# Commands whose main does not import TensorFlow quietly after parsing its flags, as the
# train tasks, tune and study do (tasks.terminal).
QUIET_HERE = {"models", "generate"}

# name -> (module with main(argv, prog), one-line help)
COMMANDS = {
    "models": ("tasks.models_table", "the zoo as a table with parameter counts"),
    "generate": ("tasks.generate", "sample text from a textgen export"),
    "export": ("tasks.export_run", "write a finished run's export again, without retraining"),
    "tune": ("tuning.cli", "KerasTuner search over depth, width, clipnorm, ..."),
    "study": ("studies.cli", "run a seed-question study and write its report"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqzoo",
        description="seqzoo: recurrent sequence models, tasks, tuning and studies.",
        epilog="Run 'seqzoo COMMAND --help' (or 'seqzoo train TASK --help') for a command's options. "
        f"TensorFlow's own start-up logging is hidden; {SHOW_LOGS}=1 shows it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train = sub.add_parser("train", help="train a zoo model on a task and export it", add_help=False)
    train.add_argument("task", nargs="?", choices=sorted(TRAIN_TASKS), metavar="TASK", help="|".join(TRAIN_TASKS))
    train.add_argument("-h", "--help", action="store_true")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        if args.task is None:
            print("usage: seqzoo train TASK [options]\n\ntasks:")
            for name, (_, help_) in TRAIN_TASKS.items():
                print(f"  {name:<10} {help_}")
            return 0 if args.help else 2
        module, prog = TRAIN_TASKS[args.task][0], f"seqzoo train {args.task}"
        rest = rest + (["--help"] if args.help else [])
    else:
        module, prog = COMMANDS[args.command][0], f"seqzoo {args.command}"
        if args.command in QUIET_HERE and not {"-h", "--help"} & set(rest):
            quiet_tensorflow()
    return importlib.import_module(module).main(rest, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
