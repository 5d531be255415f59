"""``seqzoo models``: the zoo as a table with parameter counts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tasks.options import Formatter, guarded


def rows(timesteps: int, features: int, units: int, num_layers: int) -> list[tuple[str, int, int, str]]:
    """(name, depth, parameters, description) for every zoo model at these sizes."""
    import zoo
    from zoo.config import depth_range

    out = []
    for name in zoo.MODEL_NAMES:
        low, high = depth_range(name)
        depth = max(low, num_layers if high is None else min(num_layers, high))
        config = zoo.ModelConfig(name, units=units, num_layers=depth)
        out.append((name, depth, zoo.count_params(config, timesteps, features), zoo.describe(name)))
    return out


def format_table(table: list[tuple[str, int, int, str]]) -> str:
    lines = [f"{'model':<14} {'layers':>6} {'params':>10}  description", "-" * 78]
    lines += [f"{n:<14} {d:>6} {p:>10,}  {desc}" for n, d, p, desc in table]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> None:
    for name in ("timesteps", "features", "units", "num_layers"):
        value = getattr(args, name)
        if value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    print(
        f"Parameter counts for input (batch, {args.timesteps}, {args.features}), "
        f"units={args.units}, num_layers={args.num_layers} (clamped to each model's range):\n"
    )
    print(format_table(rows(args.timesteps, args.features, args.units, args.num_layers)))


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo models") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=Formatter)
    parser.add_argument(
        "--timesteps", type=int, default=100, help="sequence length T (the unshared RNN's size grows with it)"
    )
    parser.add_argument("--features", type=int, default=16, help="input features per step")
    parser.add_argument("--units", type=int, default=64, help="hidden units per layer")
    parser.add_argument("--num-layers", type=int, default=2, help="depth, clamped to each model's range")
    args = parser.parse_args(argv)
    return guarded(prog, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
