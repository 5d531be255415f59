"""The job of ``seqzoo train textgen --text-file FILE --epochs 1``, as a plain PyTorch script:
the reference :mod:`benchmarks.command_speed` times seqzoo's command against.

Same data and model as seqzoo's textgen defaults: a contiguous 90/5/5 split of the text, a
character vocabulary from the training part (id 0 for unseen characters), Embedding 64 ->
LSTM 256 -> Linear, windows of 100 characters in batches of 64, Adam at 2e-3, one epoch of
random windows worth one pass over the training characters. Then the validation and test
loss on non-overlapping windows, the model saved (weights and vocabulary), and 200
characters sampled at temperature 0.8 from a newline.

    python -m benchmarks.torch_textgen --text-file corpus.txt --out /tmp/torch_textgen
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEQ_LEN, BATCH, EMBED, UNITS, LEARNING_RATE = 100, 64, 64, 256, 2e-3
SAMPLE_LENGTH, TEMPERATURE, PRIME = 200, 0.8, "\n"


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, EMBED)
        self.lstm = nn.LSTM(EMBED, UNITS, batch_first=True)
        self.logits = nn.Linear(UNITS, vocab_size)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.logits(out), state


def split(text: str) -> list[str]:
    a, b = int(len(text) * 0.90), int(len(text) * 0.95)
    return [text[:a], text[a:b], text[b:]]


def evaluate(model: CharLSTM, ids: np.ndarray) -> float:
    """Mean next-character loss (nats) over non-overlapping windows, a fresh state per window."""
    n = (len(ids) - 1) // SEQ_LEN
    x = torch.from_numpy(ids[: n * SEQ_LEN].reshape(n, SEQ_LEN))
    y = torch.from_numpy(ids[1 : n * SEQ_LEN + 1].reshape(n, SEQ_LEN))
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, BATCH):
            logits, _ = model(x[i : i + BATCH])
            total += nn.functional.cross_entropy(logits.flatten(0, 1), y[i : i + BATCH].flatten(), reduction="sum")
    return float(total) / (n * SEQ_LEN)


def sample(model: CharLSTM, vocab: list[str], seed: int = 0) -> str:
    index = {c: i for i, c in enumerate(vocab)}
    generator = torch.Generator().manual_seed(seed)
    out, state = [], None
    ids = torch.tensor([[index.get(c, 0) for c in PRIME]])
    with torch.no_grad():
        for _ in range(SAMPLE_LENGTH):
            logits, state = model(ids, state)
            probs = torch.softmax(logits[0, -1] / TEMPERATURE, dim=-1)
            next_id = int(torch.multinomial(probs, 1, generator=generator))
            out.append(vocab[next_id])
            ids = torch.tensor([[next_id]])
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-file", required=True)
    parser.add_argument("--out", required=True, help="folder for the saved model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    clock, seconds = time.perf_counter(), {}

    def lap(phase: str) -> None:  # where the script's seconds go, beside seqzoo's --phases table
        nonlocal clock
        seconds[phase], clock = time.perf_counter() - clock, time.perf_counter()

    texts = split(Path(args.text_file).read_text(encoding="utf-8"))
    vocab = ["[UNK]", *sorted(set(texts[0]))]
    index = {c: i for i, c in enumerate(vocab)}
    train, val, test = (np.array([index.get(c, 0) for c in t], dtype=np.int64) for t in texts)

    lap("data")
    model = CharLSTM(len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps = max(1, len(train) // (SEQ_LEN * BATCH))
    model.train()
    for _ in range(steps):
        starts = rng.integers(0, len(train) - SEQ_LEN - 1, BATCH)
        window = torch.from_numpy(np.stack([train[s : s + SEQ_LEN + 1] for s in starts]))
        logits, _ = model(window[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lap("train")
    model.eval()
    val_loss, test_loss = evaluate(model, val), evaluate(model, test)
    lap("evaluate")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "vocab.json").write_text(json.dumps(vocab))
    lap("save")
    text = sample(model, vocab, args.seed)
    lap("sample")
    print(f"{steps} steps; val {val_loss / math.log(2):.3f} bits/char, test {test_loss / math.log(2):.3f} bits/char")
    print(f"saved {out / 'model.pt'}\n--- sample ---\n{PRIME}{text}")
    print("seconds after import: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
