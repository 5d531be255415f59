"""``seqzoo study NAME``: train, measure, and write report.md with plots and raw numbers."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tasks.options import Formatter, guarded

STUDIES = {
    "weight_sharing": "studies.weight_sharing",
    "gating": "studies.gating",
    "truncation": "studies.truncation",
    "stacking": "studies.stacking",
    "exploding_gradients": "studies.exploding_gradients",
}


def load(name: str):
    if name not in STUDIES:
        raise ValueError(f"Unknown study {name!r}. Valid studies: {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name])


def run_study(name: str, args: argparse.Namespace) -> Path:
    """Run one study; write results.json/csv, plots and report.md; return the folder."""
    from studies.common import RESULTS_ROOT, write_raw
    from tasks.terminal import quiet_tensorflow

    quiet_tensorflow()
    module = load(name)
    out = Path(args.out) if args.out else RESULTS_ROOT / name
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results = module.run(args, out)
    results["seconds"] = round(time.time() - start, 1)
    results["quick"] = bool(args.quick)
    write_raw(out, results, results.get("rows"))
    (out / "report.md").write_text(module.render(results))
    return out


def render_study(name: str, out: Path | None = None) -> Path:
    """Re-render ``report.md`` from the raw ``results.json`` (no training)."""
    from studies.common import RESULTS_ROOT, load_raw
    from zoo.errors import FileProblem

    module = load(name)
    out = Path(out) if out else RESULTS_ROOT / name
    if not (out / "results.json").exists():
        raise FileProblem(out / "results.json", "no raw results to render", f"Run the study first: seqzoo study {name}")
    (out / "report.md").write_text(module.render(load_raw(out)))
    return out


def _parser(prog: str, name: str | None) -> argparse.ArgumentParser:
    doc = load(name).__doc__ if name in STUDIES else __doc__
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=Formatter)
    parser.add_argument("name", choices=list(STUDIES), metavar="NAME", help=" | ".join(STUDIES))
    parser.add_argument("--quick", action="store_true", help="a small version that runs in a few minutes")
    parser.add_argument("--seeds", type=int, default=None, help="repeats per setting (default 5; 2 with --quick)")
    parser.add_argument("--out", default=None, help="output folder (default studies/results/NAME)")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render report.md from the folder's results.json without training"
    )
    if name in STUDIES:
        load(name).add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo study") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(prog, name if name in STUDIES else None)
    args = parser.parse_args(argv)

    def _run():
        if args.seeds is None:
            args.seeds = 2 if args.quick else 5
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        out = render_study(args.name, args.out) if args.report_only else run_study(args.name, args)
        print(f"\nReport: {out / 'report.md'}\n")
        print((out / "report.md").read_text())

    return guarded(prog, _run)


if __name__ == "__main__":
    sys.exit(main())
