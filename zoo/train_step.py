"""The train and test steps seqzoo trains with, as Keras means them to be customized.

:class:`SeqModel` is a ``keras.Model`` (build it as ``SeqModel(inputs, outputs)``, exactly
like a functional ``keras.Model``) that overrides ``train_step`` and ``test_step``, the
documented hooks of Keras's "customizing what happens in fit" guide. Without a
:class:`TrainingPlan` both are Keras's own; ``zoo.training.fit`` sets a plan for the
duration of a fit:

* ``k``: truncated BPTT, the weights updated after every chunk of ``k`` steps
  (:func:`zoo.bptt.run_chunks`);
* ``carrier``: the recurrent state carried from chunk to chunk (and batch to batch when
  ``stream``), zeroed or kept at the start of every train and test batch;
* ``statistics``: extra logs computed from the gradients inside the compiled step
  (the gradient norms of :mod:`zoo.monitor`);
* ``leading_axis``: every log gets a leading axis of 1, which Keras's cross-worker
  averaging of logs needs under ``MultiWorkerMirroredStrategy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from zoo.bptt import Bptt, StateCarrier, batch_size, per_step_targets, run_chunks
from zoo.optimizers import dense_gradients


@dataclass(frozen=True)
class TrainingPlan:
    """How :class:`SeqModel` trains during one ``fit`` (see the module's docstring)."""

    k: Bptt = None
    carrier: StateCarrier | None = None
    stream: bool = False
    statistics: Callable[[list], dict] | None = None
    leading_axis: bool = False


@keras.saving.register_keras_serializable(package="seqzoo")
class SeqModel(keras.Model):
    """A functional ``keras.Model`` whose ``train_step``/``test_step`` carry seqzoo's training
    mechanics (truncated BPTT, streams, gradient statistics) while a :class:`TrainingPlan` is set.
    Everything else (compile, evaluate, predict, saving) is Keras's."""

    training_plan: TrainingPlan | None = None

    def set_training_plan(self, plan: TrainingPlan | None) -> None:
        """Train (and evaluate) by ``plan`` from now on; ``None`` restores Keras's own steps. The
        train function is rebuilt, so the next call traces the new step; the test function only
        when its step changes (see :func:`_test_step_settings`), so that evaluating after ``fit``
        reuses the test step that ``fit``'s validation traced and compiled."""
        test_changes = _test_step_settings(plan) != _test_step_settings(self.training_plan)
        self.training_plan = plan
        self.make_train_function(force=True)
        if test_changes:
            self.make_test_function(force=True)

    def train_step(self, data):
        plan = self.training_plan
        if plan is None:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if plan.carrier is not None:
            plan.carrier.begin_batch(batch_size(x), carry=plan.stream)

        def update(grads):
            grads = dense_gradients(grads)  # once, for the statistics and the optimizer
            stats = plan.statistics(grads) if plan.statistics is not None else {}
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            return stats

        stats = run_chunks(self, x, y, sample_weight, plan.k, update, per_step=per_step_targets(self))
        logs = dict(self.get_metrics_result())
        logs.update(stats)
        return _with_leading_axis(logs) if plan.leading_axis else logs

    def test_step(self, data):
        plan = self.training_plan
        if plan is not None and plan.carrier is not None:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            plan.carrier.begin_batch(batch_size(x), carry=plan.stream)
        logs = super().test_step(data)
        return _with_leading_axis(logs) if plan is not None and plan.leading_axis else logs


def _test_step_settings(plan: TrainingPlan | None) -> tuple:
    """What of a plan :meth:`SeqModel.test_step` reads: a carrier (and whether it streams) and the
    leading axis. Two plans with the same settings trace the same test step."""
    if plan is None:
        return (None, False, False)
    return (plan.carrier, plan.carrier is not None and plan.stream, plan.leading_axis)


def _with_leading_axis(logs: dict) -> dict:
    return {k: tf.expand_dims(v, 0) for k, v in logs.items()}


__all__ = ["SeqModel", "TrainingPlan"]
