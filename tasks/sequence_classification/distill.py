"""Knowledge distillation of a seed ensemble into one classifier (the ``teachers`` option).

Several models of the same settings, differing only in their seeds, make different mistakes;
their averaged prediction is better than any one of them, but it costs one model per seed to
serve. Distillation (Hinton, Vinyals and Dean, 2015) trains one student on the ensemble's
predicted class probabilities for each training sequence, softened by a temperature so that
the small probabilities of the wrong classes (which classes the ensemble finds alike) still
carry weight, instead of on the one-hot labels. The export is the student alone.

This module knows nothing about how a model is built or trained: the task trains the teachers
and hands their predictions here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from zoo import files
from zoo.errors import FileProblem

# A teacher's predictions for the training split, in its folder once it is trained.
PREDICTIONS = "train_predictions.npy"

# The probability floor under every log here: float32's smallest normal number. A softmax output can
# underflow to 0; a floor any higher (Keras's epsilon, 1e-7) would cut the gradient for exactly the
# small wrong-class probabilities that distillation is meant to teach.
FLOOR = float(np.finfo(np.float32).tiny)


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs`` (rows summing to 1) at ``temperature``: the softmax of ``log(probs) / temperature``."""
    logits = np.log(np.clip(probs, FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


@keras.saving.register_keras_serializable(package="seqzoo")
class SoftTargetCrossEntropy(keras.losses.Loss):
    """Cross-entropy between target distributions and a softmax model's probabilities at ``temperature``.

    ``y_true`` holds distributions already softened to ``temperature`` (:func:`soften`); ``y_pred`` is the
    model's softmax output, softened here the same way. The loss is scaled by ``temperature ** 2``, so that
    its gradients keep their size whatever the temperature (Hinton et al., 2015). At temperature 1 it is
    plain categorical cross-entropy.
    """

    def __init__(self, temperature: float = 1.0, name: str = "soft_target_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        logits = ops.log(ops.maximum(y_pred, FLOOR)) / self.temperature
        loss = keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)
        return loss * self.temperature**2

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


def gather(batches) -> tuple[Any, np.ndarray]:
    """One pass over a batched ``(inputs, labels)`` dataset: every example's inputs, as tensors in the
    dataset's structure (a tuple for series, one string tensor for text), and labels, as an array.

    Every batch must share its non-batch shape, as the task's splits do (each is padded once, as a whole).
    """
    import tensorflow as tf

    inputs, labels = [], []
    for x, y in batches:
        inputs.append(x)
        labels.append(np.asarray(y))
    # Tensors, not NumPy arrays: text inputs are strings, which Keras's predict takes only as tensors.
    return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *inputs), np.concatenate(labels)


def save_predictions(path: Path, predictions: np.ndarray) -> None:
    """A teacher's predicted probabilities for the training split, written whole or not at all."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(predictions, np.float32))
    files.write_bytes(path, buffer.getvalue())


def load_predictions(path: Path, examples: int) -> np.ndarray:
    """What :func:`save_predictions` wrote, checked against the training split it must describe."""
    try:
        predictions = np.load(path)
    except (OSError, ValueError) as exc:
        raise FileProblem(path, f"cannot be read ({exc})", "Delete it; the teacher then predicts again") from None
    if predictions.ndim != 2 or len(predictions) != examples:
        raise FileProblem(
            path,
            f"holds predictions of shape {predictions.shape} for a training split of {examples} sequences",
            "Delete the run folder's teacher folders (or start a new run) to train the teachers again",
        )
    return predictions
