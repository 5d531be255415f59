"""The textgen export: ``serve`` (ids -> logits), ``step`` and ``initial_state`` signatures,
the vocabulary and the sampling rule in the card, so a server samples without seqzoo."""

from __future__ import annotations

import json
from typing import Any

from tasks.text_generation.data import OOV_ID, TaskData
from tasks.text_generation.model import is_window_model, lm_config
from tasks.text_generation.sampling import make_step, pad_id, pick_next

VOCAB_FILE = "vocab.json"


def export_model(model, config, data: TaskData, *, root, card: dict[str, Any], run_dir=None):
    """SavedModel with ``serve``, ``step`` and ``initial_state`` signatures, the vocab and the card."""
    import tensorflow as tf

    from tasks.export import export
    from tasks.text_generation import TASK

    seq_len = data.spec["seq_len"]
    window = is_window_model(config.model)
    step, init = make_step(model, config, len(data.vocab), seq_len, pad_id=pad_id(data.vocab))
    if window:
        state_specs = [tf.TensorSpec((None, seq_len), tf.int32, name="state_0")]
    else:
        import zoo

        state_specs = [
            tf.TensorSpec((None, w), tf.float32, name=f"state_{i}")
            for i, w in enumerate(zoo.state_shapes(lm_config(config)))
        ]

    # Signatures take and return flat tensors: a window model's state is one tensor, a recurrent one a list.
    def as_list(state):
        return [state] if window else list(state)

    def step_endpoint(ids, *states):
        logits, new = step(ids, states[0] if window else list(states))
        return {"logits": logits, **{f"state_{i}": s for i, s in enumerate(as_list(new))}}

    def initial_state_endpoint(batch_size):
        return {f"state_{i}": s for i, s in enumerate(as_list(init(batch_size)))}

    serve_len = seq_len if window else None
    endpoints = {
        "serve": (lambda ids: model(ids, training=False), [tf.TensorSpec((None, serve_len), tf.int32, name="ids")]),
        "step": (step_endpoint, [tf.TensorSpec((None,), tf.int32, name="ids"), *state_specs]),
        "initial_state": (initial_state_endpoint, [tf.TensorSpec((), tf.int32, name="batch_size")]),
    }
    textgen = {
        "vocab_file": VOCAB_FILE,
        "oov_id": OOV_ID,
        "seq_len": seq_len,
        "embedding_dim": data.spec["embedding_dim"],
        "state": "window" if window else "recurrent",
        "pad_id": pad_id(data.vocab),
        "sampling": pick_next.__doc__.split("\n\n")[1].strip()
        + " u = 1 - numpy.random.default_rng(seed).random(length).",
    }
    return export(
        model,
        task=TASK,
        config=lm_config(config),
        root=root,
        endpoints=endpoints,
        track=[] if window else [step.model],  # the step model's variables must be saved with the signatures
        card={**card, "textgen": textgen},
        files={VOCAB_FILE: json.dumps(data.vocab, ensure_ascii=False)},
        run_dir=run_dir,
    )
