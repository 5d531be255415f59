"""Gradient-norm monitoring, computed inside the compiled train step.

Per step (one optimizer update; with truncated BPTT the mean over the
batch's chunk updates) the step logs:

* ``grad_norm``          global L2 norm of all gradients, before clipping
* ``grad_norm_clipped``  the same after the optimizer's clipping (Keras rules:
  ``clipnorm`` per variable, else ``global_clipnorm``, else ``clipvalue``)
* ``grad_norm/<layer>`` per layer, and ``grad_norm/<layer>/<gate>`` per gate
  block of LSTM (i, f, c, o) and GRU (z, r, h) layers: the kernel, recurrent
  kernel and bias columns of that gate together.

:class:`GradientMonitor` writes them all to ``grad_norms.csv`` and TensorBoard
beside the run (``history.steps`` holds the per-step series), draws
``grad_norms.png`` (log scale, global and per layer), puts the epoch means of the
global norms into the History, and stops the run on a NaN/Inf loss with
:class:`TrainingDiverged`. It is also fit's progress bar (Keras adds none when a
``ProgbarLogger`` is among the callbacks): one line of loss, the task's metric,
the global gradient norm and the learning rate, within the terminal's width
(:mod:`zoo.progress`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from zoo.errors import SeqzooError
from zoo.optimizers import dense_gradients
from zoo.progress import ProgressLine

GATES = {keras.layers.LSTM: "ifco", keras.layers.GRU: "zrh"}
VECTOR_KEY = "_grad_norms"  # the per-layer/gate norms travel as one vector, popped from the step's logs
GLOBAL_NORMS = ("grad_norm", "grad_norm_clipped", "grad_norm_max")  # the norms a History keeps per epoch


# Scalars written as raw summary protos through TensorFlow's summary writer (TensorBoard
# reads them as scalars; the tensorboard package itself is not needed to write them).
_SCALAR = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


class ScalarWriter:
    """TensorBoard scalars under ``<log_dir>/<split>`` (train, validation)."""

    def __init__(self, log_dir: Path):
        self.log_dir, self.writers = Path(log_dir), {}

    def _writer(self, split: str):
        if split not in self.writers:
            self.writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
        return self.writers[split]

    def write(self, split: str, items) -> None:
        """``items``: iterable of (tag, value, step)."""
        self._write(split, ((step, [(tag, value)]) for tag, value, step in items))

    def write_table(self, split: str, tags: tuple[str, ...], steps, values) -> None:
        """Many steps at once: ``values[i, j]`` is ``tags[j]`` at ``steps[i]``."""
        self._write(split, ((step, zip(tags, row, strict=True)) for step, row in zip(steps, values, strict=True)))

    def _write(self, split: str, events) -> None:
        """``events``: (step, [(tag, value), ...]), one raw event per step. No traced function:
        tracing one with a summary op per value would slow a run's first epoch noticeably."""
        writer = self._writer(split)
        with writer.as_default():
            for step, scalars in events:
                summary = summary_pb2.Summary(
                    value=[
                        summary_pb2.Summary.Value(tag=tag, metadata=_SCALAR, tensor=_scalar(v)) for tag, v in scalars
                    ]
                )
                tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))
        writer.flush()


def _scalar(value) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=[value]
    )


class TrainingDiverged(SeqzooError):
    """The loss became NaN or Inf; ``str(err)`` names the step and what to do."""


def _groups(model: keras.Model):
    """(group name, layer, gates) for every layer that owns trainable variables."""

    def walk(layer, prefix):
        if isinstance(layer, keras.layers.Bidirectional):
            yield from walk(layer.forward_layer, f"{prefix}{layer.name}/")
            yield from walk(layer.backward_layer, f"{prefix}{layer.name}/")
        elif getattr(layer, "layers", None) and layer is not model and isinstance(layer, keras.Model):
            for child in layer.layers:
                yield from walk(child, prefix)
        elif layer.trainable_weights:
            gates = next((g for cls, g in GATES.items() if isinstance(layer, cls)), None)
            yield prefix + layer.name, layer, gates

    for layer in model.layers:
        yield from walk(layer, "")


class GradientStats:
    """Builds the in-graph statistics for ``model``'s trainable weights."""

    def __init__(self, model: keras.Model):
        self.model = model
        index = {id(v): i for i, v in enumerate(model.trainable_weights)}
        self.layer_names: list[str] = []
        self.layer_members: list[list[int]] = []
        self.gate_names: list[str] = []
        self.gate_members: list[tuple[int, int, list[int]]] = []  # (gates, units, var indices)
        seen: set[int] = set()
        for name, layer, gates in _groups(model):
            members = [index[id(v)] for v in layer.trainable_weights if id(v) in index and index[id(v)] not in seen]
            if not members:
                continue
            seen.update(members)
            self.layer_names.append(name)
            self.layer_members.append(members)
            if gates:
                units = layer.units
                gated = [i for i in members if model.trainable_weights[i].shape[-1] == len(gates) * units]
                self.gate_members.append((len(gates), units, gated))
                self.gate_names.extend(f"{name}/{g}" for g in gates)
        rest = [i for i in range(len(model.trainable_weights)) if i not in seen]
        if rest:
            self.layer_names.append("other")
            self.layer_members.append(rest)
        self.names = [f"grad_norm/{n}" for n in self.layer_names + self.gate_names]

    def __call__(self, grads) -> dict:
        opt = self.model.optimizer
        grads = dense_gradients(grads)  # as the optimizer applies them
        gate_sq = {  # variable index -> squared norm of each gate's columns
            i: _gate_sum_sq(grads[i], gates, units)
            for gates, units, members in self.gate_members
            for i in members
            if grads[i] is not None
        }
        sq = [tf.reduce_sum(gate_sq[i]) if i in gate_sq else _sum_sq(g) for i, g in enumerate(grads)]
        norm = tf.sqrt(tf.add_n(sq))
        if opt.clipnorm:
            c2 = float(opt.clipnorm) ** 2
            clipped = tf.sqrt(tf.add_n([s * tf.minimum(1.0, c2 / tf.maximum(s, 1e-30)) for s in sq]))
        elif opt.global_clipnorm:
            clipped = tf.minimum(norm, float(opt.global_clipnorm))
        elif opt.clipvalue:
            v = float(opt.clipvalue)
            clipped = tf.sqrt(tf.add_n([_sum_sq(tf.clip_by_value(g, -v, v)) for g in grads if g is not None]))
        else:
            clipped = norm
        parts = [tf.reshape(tf.add_n([sq[i] for i in members]), [1]) for members in self.layer_members]
        for gates, _, members in self.gate_members:
            per_gate = [gate_sq[i] for i in members if i in gate_sq]
            parts.append(tf.add_n(per_gate) if per_gate else tf.zeros([gates]))
        return {"grad_norm": norm, "grad_norm_clipped": clipped, VECTOR_KEY: tf.sqrt(tf.concat(parts, 0))}


def _gate_sum_sq(g, gates: int, units: int):
    """(gates,): the squared norm of each gate's block of columns of a (..., gates * units)
    gradient, summed over the leading axes first: one reduction over rows, then a tiny one over
    the columns, which is faster than reducing a (-1, gates, units) view over axes 0 and 2."""
    square = tf.square(tf.cast(g, tf.float32))
    columns = tf.reduce_sum(square, axis=list(range(square.shape.rank - 1)))
    return tf.reduce_sum(tf.reshape(columns, [gates, units]), axis=1)


def _sum_sq(g):
    return tf.constant(0.0) if g is None else tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))


def plot_grad_norms(csv_path: Path, png_path: Path) -> Path | None:
    """Global gradient norm per step (before and after clipping) and, below it, each layer's; log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    step = [int(r["step"]) for r in rows]
    layers = [k for k in rows[0] if k.startswith("grad_norm/") and k.count("/") == 1]
    fig, axes = plt.subplots(2 if layers else 1, 1, figsize=(8, 6.5 if layers else 4), sharex=True, squeeze=False)
    panels = [(("grad_norm", "before clipping"), ("grad_norm_clipped", "after clipping"))]
    panels += [tuple((k, k.removeprefix("grad_norm/")) for k in layers)] if layers else []
    for ax, lines, ylabel in zip(axes[:, 0], panels, ("global gradient norm", "per-layer gradient norm"), strict=False):
        for key, label in lines:
            ax.plot(step, [float(r[key]) for r in rows], label=label, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
    axes[0, 0].set_title(Path(csv_path).parent.name)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


class GradientMonitor(keras.callbacks.ProgbarLogger):
    """Collects the step statistics; writes CSV/TensorBoard/PNG; stops on NaN; shows the progress line.

    With ``names=None`` (monitoring off) it only guards against a NaN/Inf loss and shows the line.
    ``step`` counts optimizer steps (batches) across epochs, also across a resume. As fit's
    ``ProgbarLogger`` it follows fit's ``verbose``: 0 prints nothing, 2 one line per epoch, 1 a
    line redrawn in place on a terminal (one line per epoch when the output is not a terminal).
    """

    def __init__(self, names: list[str] | None, run_dir: Path | None = None, *, initial_step: int = 0):
        super().__init__()
        self.names = names
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.step = initial_step
        self.steps: dict[str, list[float]] = {}
        self.diverged: str | None = None
        self.last_finite_norm: float | None = None
        self._rows: list[list[float]] = []
        self._epoch = 0
        self._epoch_rows: list[list[float]] = []
        self.tensorboard = ScalarWriter(self.run_dir / "tensorboard") if self.run_dir is not None else None
        self.columns = ["epoch", "step", "loss", "grad_norm", "grad_norm_clipped", *(names or [])]
        self.show, self.epochs_total, self.batches, self.batches_done = 1, 1, None, 0
        self.line: ProgressLine | None = None

    # ------------------------------------------------------------------ the progress line (fit's ProgbarLogger hooks)

    def set_params(self, params):
        self.params = params
        verbose = params.get("verbose", 1)
        self.show = 1 if verbose == "auto" else int(verbose)
        self.epochs_total, self.batches = params.get("epochs", 1), params.get("steps")

    def on_train_begin(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass  # fit's validation runs silently; the epoch's line shows its result

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def progress_fields(self, logs: dict, *, final: bool) -> list[tuple[str, float, float]]:
        """(name, value, rank) for :func:`zoo.progress.render`: loss, the task's metric, at the end of an
        epoch their validation values, the global gradient norm and the learning rate (rank 6 and up:
        further metrics, shown when there is room)."""
        own = {"loss", "learning_rate", VECTOR_KEY, *GLOBAL_NORMS}
        metrics = [k for k in logs if k not in own and not k.startswith("val_") and "/" not in k]
        fields = [("loss", logs["loss"], 0)] if "loss" in logs else []
        fields += [(k, logs[k], 2 if i == 0 else 6) for i, k in enumerate(metrics)]
        if final:
            fields += [("val_loss", logs["val_loss"], 1)] if "val_loss" in logs else []
            fields += [
                (f"val_{k}", logs[f"val_{k}"], 3 if i == 0 else 7) for i, k in enumerate(metrics) if f"val_{k}" in logs
            ]
        fields += [("grad_norm", logs["grad_norm"], 4)] if "grad_norm" in logs else []
        rate = logs.get("learning_rate", self.model.optimizer.learning_rate if self.model.optimizer else None)
        fields += [("learning_rate", rate, 5)] if rate is not None else []
        return [(name, _as_float(value), rank) for name, value, rank in fields]

    # ------------------------------------------------------------------ the statistics

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_rows = []
        self.batches_done = 0
        if self.show:
            if self.epochs_total > 1:
                print(f"Epoch {epoch + 1}/{self.epochs_total}", flush=True)
            self.line = ProgressLine(self.batches, every_step=self.show == 1)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs if logs is not None else {}
        vector = logs.pop(VECTOR_KEY, None)
        self.step += 1
        loss = float(logs.get("loss", float("nan")))
        norm = float(logs["grad_norm"]) if "grad_norm" in logs else None
        if self.names is not None:
            values = np.asarray(vector, dtype=float).reshape(-1) if vector is not None else []
            row = [self._epoch + 1, self.step, loss, norm, float(logs["grad_norm_clipped"]), *values]
            self._rows.append(row)
            self._epoch_rows.append(row)
            for key, value in zip(self.columns[2:], row[2:], strict=True):
                self.steps.setdefault(key, []).append(value)
        bad_norm = norm is not None and not math.isfinite(norm)
        if not math.isfinite(loss) or bad_norm:
            shown = "unknown (monitoring off)" if self.last_finite_norm is None else f"{self.last_finite_norm:.4g}"
            self.diverged = (
                f"training diverged: loss={loss} at epoch {self._epoch + 1}, step {self.step} (batch {batch + 1} of the "
                f"epoch); gradient norm before clipping at that step: {norm}, last finite one: {shown}. "
                "Clip the gradients (global_clipnorm=1.0 or clipnorm=1.0; --global-clipnorm 1.0 on the command line) or lower the learning_rate."
            )
            self.model.stop_training = True
        elif norm is not None:
            self.last_finite_norm = norm
        self.batches_done = batch + 1
        if self.line is not None and self.line.due():
            self.line.update(batch + 1, self.progress_fields(logs, final=False))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.pop(VECTOR_KEY, None)
        if logs is not None and self.names is not None and self._epoch_rows:
            # Epoch means of the global norms instead of the last step's values, for History and history.csv;
            # the per-layer and per-gate ones are in grad_norms.csv and TensorBoard.
            rows = np.asarray([r[3:5] for r in self._epoch_rows], dtype=float)
            logs["grad_norm"], logs["grad_norm_clipped"] = (float(v) for v in rows.mean(axis=0))
            logs["grad_norm_max"] = float(rows[:, 0].max())
        if self.line is not None:
            self.line.finish(self.batches_done, self.progress_fields(logs or {}, final=True))
            self.line = None
        self.flush()
        if self.tensorboard is not None and logs:
            for split, keep in (
                ("train", lambda k: not k.startswith("val_")),
                ("validation", lambda k: k.startswith("val_")),
            ):
                items = [
                    (f"epoch_{k.removeprefix('val_')}", float(v), epoch)
                    for k, v in logs.items()
                    if keep(k) and _number(v)
                ]
                self.tensorboard.write(split, items)

    def on_train_end(self, logs=None):
        self.flush()
        if self.run_dir is not None and self.names is not None and (self.run_dir / "grad_norms.csv").exists():
            plot_grad_norms(self.run_dir / "grad_norms.csv", self.run_dir / "grad_norms.png")

    def flush(self) -> None:
        if self.run_dir is None or not self._rows or self.names is None:
            self._rows = []
            return
        path = self.run_dir / "grad_norms.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.columns)
            w.writerows(self._rows)
        table = np.asarray(self._rows, dtype=np.float64)
        self.tensorboard.write_table("train", tuple(f"step/{k}" for k in self.columns[2:]), table[:, 1], table[:, 2:])
        self._rows = []


def _as_float(value) -> float:
    """A log value as a float: a Python or NumPy number, a one-element array (multi-worker logs) or a variable."""
    return float(np.asarray(keras.ops.convert_to_numpy(value), dtype=float).reshape(-1)[0])


def _number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def truncate_csv(path: Path, keep_epochs: int) -> None:
    """Drop rows of epochs > ``keep_epochs`` (1-based ``epoch`` column; Keras's
    history.csv has a 0-based one) from a resumed run's CSV."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    col = header.index("epoch")
    offset = 0 if path.name == "history.csv" else 1  # CSVLogger counts epochs from 0
    body = [r for r in body if r and int(float(r[col])) < keep_epochs + offset]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *body])


def last_step(path: Path) -> int:
    """The last ``step`` in a grad_norms.csv (0 when absent)."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["step"]) if rows else 0
