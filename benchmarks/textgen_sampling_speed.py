"""Sampling speed: seqzoo's O(1)-per-character sampler vs whole-window re-feeding.

Trains a character model briefly on CORPUS (or loads ``--export``), then
generates with both samplers from the same weights, in the same XLA-compiled
loop and the same sampling rule; they differ only in the per-character work:

* step: one recurrent step, carrying the state (``Sampler.from_model``);
* re-feed: the last ``--window`` characters through the whole model for every
  new character (what the keras-io text generation example does).

    python -m benchmarks.textgen_sampling_speed ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import RESULTS, machine, write_section


def write_textgen_section(sub: str, body: str) -> None:
    """Replace ``sub``'s block inside the ``textgen`` section of RESULTS.md."""
    import re

    text = RESULTS.read_text() if RESULTS.exists() else ""
    found = re.search(r"<!-- textgen:start -->\n(.*?)\n<!-- textgen:end -->", text, re.S)
    with tempfile.TemporaryDirectory() as tmp:
        inner = Path(tmp) / "section.md"
        inner.write_text(found.group(1) if found else "## Text generation\n")
        write_section(f"textgen-{sub}", body, inner)
        write_section("textgen", inner.read_text())


def _time(sampler, prime: str, length: int, repeats: int) -> float:
    sampler.generate(prime, length, seed=0)  # compile
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        sampler.generate(prime, length, seed=r)
        best = min(best, time.perf_counter() - t)
    return length / best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="UTF-8 text to train on (e.g. ../shared/data/tinyshakespeare.txt)")
    parser.add_argument("--export", default=None, help="use this textgen export instead of training")
    parser.add_argument("--model", default="lstm", help="zoo model to train")
    parser.add_argument("--units", type=int, default=256, help="hidden units")
    parser.add_argument("--num-layers", type=int, default=None, help="depth")
    parser.add_argument("--train-steps", type=int, default=100, help="training batches before timing")
    parser.add_argument("--window", type=int, default=100, help="characters the re-feeding baseline reads")
    parser.add_argument("--length", type=int, default=500, help="characters generated per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per sampler (best is kept)")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    from tasks import text_generation as tg
    from tasks.export import load_card, load_keras
    from zoo import ModelConfig

    if args.export:
        card = load_card(args.export)
        model, config = load_keras(args.export), ModelConfig.from_dict(card["config"])
        vocab = json.loads((Path(args.export) / card["textgen"]["vocab_file"]).read_text(encoding="utf-8"))
        seq_len = card["textgen"]["seq_len"]
        what = f"export {args.export}"
    else:
        with tempfile.TemporaryDirectory() as runs:
            options = tg.Options(
                text_file=args.corpus,
                model=args.model,
                units=args.units,
                num_layers=args.num_layers,
                epochs=1,
                steps_per_epoch=args.train_steps,
                sample_length=0,
                runs=runs,
                export=False,
                monitor=False,
            )
            result = tg.run(options)
        model, config, data = result.model, result.details["config"], result.details["data"]
        vocab, seq_len = data.vocab, data.spec["seq_len"]
        what = f"{args.model} {args.units} units trained {args.train_steps} batches on {Path(args.corpus).name}"
    window = args.window if not tg.is_window_model(config.model) else seq_len
    step = tg.Sampler.from_model(model, config, vocab, seq_len)
    refeed = tg.Sampler.from_model(model, config, vocab, window, recompute_window=True)
    fast = _time(step, "ROMEO:", args.length, args.repeats)
    slow = _time(refeed, "ROMEO:", max(args.length // 5, 20), args.repeats)
    rows = [("step (carried state)", fast), (f"re-feed {window}-char window", slow)]
    table = [
        "| sampler | chars/s |",
        "|---|---:|",
        *[f"| {n} | {v:,.0f} |" for n, v in rows],
        f"| **speed-up** | **{fast / slow:.1f}x** |",
    ]
    print(f"\n{what}; {machine()}\n")
    print("\n".join(table))
    if args.write:
        cmd = "python -m benchmarks.textgen_sampling_speed " + " ".join(sys.argv[1:] if argv is None else argv)
        write_textgen_section(
            "sampling", "\n".join(["### Sampling speed", "", f"`{cmd}`", "", f"{what}; {machine()}", "", *table])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
