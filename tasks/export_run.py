"""``seqzoo export RUN_DIR``: write a finished run's export again, without retraining.

Every run trained with export on keeps its complete export in ``RUN_DIR/export/``. When
copying it to the export root failed (a full or read-only disk) or another copy is wanted
elsewhere, this command writes the next version from it.
"""

from __future__ import annotations

import argparse
import sys

from tasks.options import Formatter, guarded


def build_parser(prog: str = "seqzoo export") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=Formatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/classify/gru/20261205-120000")
    parser.add_argument(
        "--saved-models",
        default=None,
        metavar="DIR",
        help="export root (default: $SEQZOO_SAVED_MODELS, else ./saved_models)",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    from tasks.versions import publish

    print(f"Exported to {publish(args.run_dir, args.saved_models)}")


def main(argv=None, prog: str = "seqzoo export") -> int:
    args = build_parser(prog).parse_args(argv)
    return guarded(prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
