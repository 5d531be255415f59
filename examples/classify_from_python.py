"""Train a classifier from Python, then serve its export from a fresh process without seqzoo.

    python examples/classify_from_python.py [OUTPUT_FOLDER] [--quick]

Trains a GRU on the UEA JapaneseVowels speakers (shipped with sktime, offline) through the
same typed API the ``seqzoo train classify`` command uses, exports it, and asks a separate
Python process that imports only TensorFlow to classify five test utterances.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from tasks import sequence_classification as classify
from tasks.sequence_classification import data as D

# What a server runs: TensorFlow and the export, nothing from seqzoo.
SERVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    served = tf.saved_model.load(sys.argv[1])
    batch = np.load(sys.argv[2])
    out = served.serve(batch["values"], batch["lengths"])
    print(json.dumps([name.decode() for name in out["class_name"].numpy()]))
""")


def main(folder: Path, quick: bool) -> dict:
    options = classify.Options(
        model="gru", units=32, epochs=20, runs=str(folder / "runs"), saved_models=str(folder / "saved_models")
    )
    if quick:
        options = classify.Options.quick(units=8, runs=options.runs, saved_models=options.saved_models)
    result = classify.run(options, verbose=0)
    print(
        f"test accuracy {result.metrics['accuracy']:.2%} (majority class "
        f"{result.baselines['majority_class_accuracy']:.2%}); export {result.export}"
    )

    series = D.read_ts(D.bundled_paths("japanese_vowels")[1])  # the test file: raw, unnormalized values
    values, lengths = D.pad(series.values[:5], None)
    np.savez(folder / "batch.npz", values=values, lengths=lengths)
    served = subprocess.run(
        [sys.executable, "-c", SERVER, str(result.export), str(folder / "batch.npz")],
        capture_output=True,
        text=True,
        check=True,
    )
    predicted = json.loads(served.stdout.strip().splitlines()[-1])
    print(f"served in a fresh process: predicted {predicted}, true {list(series.labels[:5])}")
    return {
        "export": str(result.export),
        "predicted": predicted,
        "true": list(series.labels[:5]),
        "accuracy": result.metrics["accuracy"],
    }


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    out = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="seqzoo-example-"))
    out.mkdir(parents=True, exist_ok=True)
    main(out, quick="--quick" in sys.argv[1:])
