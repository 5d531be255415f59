"""``seqzoo generate PATH``: sample text from a textgen export.

One recurrent step per character with the carried state, inside one
XLA-compiled loop (window models -- unshared_rnn, bidirectional -- re-feed their
last ``seq_len`` characters instead). For a fixed ``--seed`` the characters are
the same as those a server gets from the export's ``step`` signature with the
rule in ``card.json`` (``textgen.sampling``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.options import Formatter, guarded


def build_parser(prog: str = "seqzoo generate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=Formatter)
    parser.add_argument("path", help="a textgen export: saved_models/textgen/<model>/<version> or its model folder")
    parser.add_argument(
        "--prime",
        default="\n",
        help="text to start from; unseen characters become the OOV token (default: %(default)r)",
    )
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="> 0; lower is more conservative")
    parser.add_argument("--top-k", type=int, default=0, help="sample only among the k likeliest characters (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same text)")
    return parser


def load_sampler(path: str | Path):
    """(Sampler, card) for a textgen export folder."""
    from tasks.export import load_keras
    from tasks.text_generation import TASK, Sampler
    from tasks.versions import CARD, REEXPORT, export_file, load_card, resolve_export
    from zoo import ModelConfig
    from zoo.errors import FileProblem

    folder = resolve_export(path)
    card = load_card(folder)
    if card["task"] != TASK:
        raise FileProblem(
            folder,
            f"this is a seqzoo export of task {card['task']!r}, not a text generation model",
            "Pass a folder under saved_models/textgen/",
        )
    try:
        info = card["textgen"]
        vocab_file = export_file(folder, info["vocab_file"])
        config = ModelConfig.from_dict(card["config"])
        seq_len = int(info["seq_len"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, FileProblem):
            raise
        raise FileProblem(folder / CARD, f"the card lacks or garbles a textgen field ({exc})", REEXPORT) from None
    try:
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileProblem(vocab_file, f"the vocabulary is not valid JSON ({exc})", REEXPORT) from None
    return Sampler.from_model(load_keras(folder), config, vocab, seq_len), card


def run(args: argparse.Namespace) -> int:
    from tasks.text_generation import check_sampling_args

    check_sampling_args(args.length, args.temperature, args.top_k)
    if not args.prime:
        raise ValueError("--prime must hold at least one character")
    sampler, _ = load_sampler(args.path)
    _, unseen = sampler.encode(args.prime)
    if unseen:
        print(
            f"note: characters not in the training vocabulary were replaced by the OOV token: {unseen!r}",
            file=sys.stderr,
        )
    text = sampler.generate(args.prime, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    print(args.prime + text)
    return 0


def main(argv=None, prog: str = "seqzoo generate") -> int:
    args = build_parser(prog).parse_args(argv)
    return guarded(prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
