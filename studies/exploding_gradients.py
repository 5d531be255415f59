"""Why can LSTMs still explode? Gradient norms under a large learning rate and long sequences.

Task: the adding problem (``studies.gating.adding_data``) at a long length L:
channel 0 is U(0, 1) noise, channel 1 marks two steps; the target is the sum of
the two marked values (MSE; predicting the mean scores Var(target) ~ 0.17).

``lstm``, ``gru`` and ``simple_rnn`` are trained with plain SGD at a large
learning rate, each without clipping, with ``clipnorm`` (every gradient tensor
clipped to that norm) and with ``global_clipnorm`` (all gradients jointly).
Every step's global gradient norm (before and after clipping) comes from
``zoo.training.fit``'s monitoring (``grad_norms.csv`` in each run's folder under
``runs/``). A callback records the spectral radius (max |eigenvalue|) of every
gate's recurrent kernel block after every epoch. A run whose loss turns NaN/Inf
raises ``zoo.monitor.TrainingDiverged``; it is recorded as diverged, not fatal.
"""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np

from studies.common import fmt, fmt_ci, markdown_table, mean_ci, pyplot, savefig, seeds_for, verdict

NAME = "exploding_gradients"
TITLE = "Exploding gradients: lstm vs gru vs simple_rnn, with and without clipping"
MODELS = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h"), "simple_rnn": ("h",)}


def add_arguments(parser) -> None:
    parser.add_argument("--length", type=int, default=None, help="sequence length L (default 200; 100 with --quick)")
    parser.add_argument("--learning-rate", type=float, default=None, help="SGD learning rate (default 0.3)")
    parser.add_argument("--clip", type=float, default=1.0, help="the clipnorm / global_clipnorm threshold")
    parser.add_argument("--units", type=int, default=32, help="units of every model")


def _settings(args) -> dict:
    q = args.quick
    return {
        "length": args.length or (100 if q else 200),
        "learning_rate": args.learning_rate or 0.3,
        "optimizer": "sgd",
        "clip": args.clip,
        "units": args.units,
        "n_train": 512 if q else 2048,
        "n_test": 256 if q else 1000,
        "batch_size": 32,
        "epochs": 3 if q else 10,
        "clips": ["none", "clipnorm", "global_clipnorm"],
    }


def _finite(v):
    v = float(v)
    return v if math.isfinite(v) else None


def spectral_radii(model) -> dict[str, float]:
    """max |eig| of each gate's (units, units) block of every recurrent kernel in ``model``."""
    out = {}
    for layer in model.layers:
        cell = getattr(layer, "cell", None)
        kernel = getattr(cell, "recurrent_kernel", None)
        if kernel is None:
            continue
        w = np.asarray(kernel.numpy(), dtype=float)
        u = w.shape[0]
        gates = {4: GATES["lstm"], 3: GATES["gru"], 1: GATES["simple_rnn"]}[w.shape[1] // u]
        for i, g in enumerate(gates):
            block = w[:, i * u : (i + 1) * u]
            out[g] = _finite(np.max(np.abs(np.linalg.eigvals(block)))) if np.all(np.isfinite(block)) else None
    return out


def _spectral_callback(record: list):
    import keras

    class Spectral(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            record.append(spectral_radii(self.model))

        def on_epoch_end(self, epoch, logs=None):
            record.append(spectral_radii(self.model))

    return Spectral()


def _read_norms(path):
    if not path.exists():
        return {"grad_norm": [], "grad_norm_clipped": [], "loss": []}
    rows = list(csv.DictReader(open(path, newline="")))
    return {k: [_finite(r[k]) for r in rows] for k in ("grad_norm", "grad_norm_clipped", "loss")}


def _train_one(s, model_name, clip, seed, data, run_dir):
    import keras

    import zoo
    from studies.common import dataset
    from zoo import training
    from zoo.monitor import TrainingDiverged

    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x.shape[1:])
    outputs = keras.layers.Dense(1)(zoo.apply(zoo.ModelConfig(model_name, units=s["units"]), inputs))
    model = zoo.SeqModel(inputs, outputs)
    clip_kw = {} if clip == "none" else {clip: s["clip"]}
    training.compile_model(model, loss="mse", learning_rate=s["learning_rate"], optimizer=s["optimizer"], **clip_kw)
    radii: list = []
    shutil.rmtree(run_dir, ignore_errors=True)
    diverged, message = False, ""
    try:
        training.fit(
            model,
            dataset(x, y, s["batch_size"], seed),
            epochs=s["epochs"],
            run_dir=run_dir,
            monitor=True,
            checkpoint=False,
            resume=False,
            verbose=0,
            callbacks=[_spectral_callback(radii)],
        )
    except TrainingDiverged as err:
        diverged, message = True, str(err).split(";")[0]
    norms = _read_norms(run_dir / "grad_norms.csv")
    test_mse = None
    if not diverged:
        test_mse = _finite(np.mean((model.predict(xt, verbose=0, batch_size=512)[:, 0] - yt) ** 2))
        diverged = test_mse is None
    return norms, radii, diverged, message, test_mse


def run(args, out) -> dict:
    from studies.gating import adding_data

    s = _settings(args)
    rows, traces, radii_all = [], {}, {}
    for seed in seeds_for(args):
        rng = np.random.default_rng(seed)
        data = (adding_data(s["n_train"], s["length"], rng), adding_data(s["n_test"], s["length"], rng))
        s["target_variance"] = float(np.var(data[1][1]))
        for m in MODELS:
            for clip in s["clips"]:
                key = f"{m}|{clip}|{seed}"
                norms, radii, diverged, message, test_mse = _train_one(
                    s, m, clip, seed, data, out / "runs" / f"{m}_{clip}_seed{seed}"
                )
                traces[key] = norms
                radii_all[key] = radii
                g = np.asarray([v for v in norms["grad_norm"] if v is not None], float)
                first_bad = next((i + 1 for i, v in enumerate(norms["loss"]) if v is None), None)
                final_rad = [v for v in (radii[-1] if radii else {}).values() if v is not None]
                init_rad = [v for v in (radii[0] if radii else {}).values() if v is not None]
                rows.append(
                    {
                        "model": m,
                        "clip": clip,
                        "seed": seed,
                        "diverged": bool(diverged),
                        "diverged_step": first_bad,
                        "message": message,
                        "test_mse": test_mse,
                        "steps": len(norms["grad_norm"]),
                        "final_train_loss": next((v for v in reversed(norms["loss"]) if v is not None), None),
                        "grad_norm_median": _finite(np.median(g)) if len(g) else None,
                        "grad_norm_p99": _finite(np.percentile(g, 99)) if len(g) else None,
                        "grad_norm_max": _finite(g.max()) if len(g) else None,
                        "frac_steps_over_clip": float(np.mean(g > s["clip"])) if len(g) else None,
                        "spectral_radius_init": max(init_rad) if init_rad else None,
                        "spectral_radius_final": max(final_rad) if final_rad else None,
                    }
                )
    results = {"settings": s, "rows": rows, "traces": traces, "radii": radii_all}
    _plot(results, out)
    return results


def _vals(results, model, clip, key):
    return [r[key] for r in results["rows"] if r["model"] == model and r["clip"] == clip and r[key] is not None]


def _plot(results, out) -> None:
    plt = pyplot()
    s = results["settings"]
    clips = s["clips"]
    fig, axes = plt.subplots(len(MODELS), 2, figsize=(14, 3.3 * len(MODELS)))
    for i, m in enumerate(MODELS):
        ax = axes[i, 0]
        for clip in clips:
            tr = results["traces"].get(f"{m}|{clip}|0", {"grad_norm": []})
            g = [np.nan if v is None else v for v in tr["grad_norm"]]
            ax.plot(np.arange(1, len(g) + 1), g, lw=1, label=clip)
        ax.axhline(s["clip"], color="grey", ls=":", label="clip threshold")
        ax.set(
            yscale="log",
            xlabel="optimizer step",
            ylabel="global grad norm (before clipping)",
            title=f"{m}: gradient-norm trace (seed 0)",
        )
        ax.legend(fontsize=7)
        ax = axes[i, 1]
        for clip in clips:
            pooled = [
                v
                for k, tr in results["traces"].items()
                if k.startswith(f"{m}|{clip}|")
                for v in tr["grad_norm"]
                if v is not None and v > 0
            ]
            if pooled:
                ax.hist(np.log10(pooled), bins=30, alpha=0.5, label=clip)
        ax.set(xlabel="log10 grad norm", ylabel="steps", title=f"{m}: distribution over all steps and seeds")
        ax.legend(fontsize=7)
    savefig(fig, out, "grad_norms.png")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    ax = axes[0]
    for m in MODELS:
        for clip, style in zip(clips, ("-", "--", ":"), strict=False):
            rad = results["radii"].get(f"{m}|{clip}|0", [])
            series = [max([v for v in r.values() if v is not None], default=np.nan) for r in rad]
            ax.plot(np.arange(len(series)), series, style, marker="o", label=f"{m} {clip}")
    ax.axhline(1.0, color="grey", ls=":")
    ax.set(
        xlabel="epoch (0 = initialization)",
        ylabel="max spectral radius over gates",
        title="recurrent kernel spectral radius (seed 0)",
    )
    ax.legend(fontsize=6, ncol=3)
    ax = axes[1]
    width = 0.8 / len(clips)
    for j, clip in enumerate(clips):
        st = [
            mean_ci(_vals(results, m, clip, "test_mse"))
            if _vals(results, m, clip, "test_mse")
            else {"mean": np.nan, "ci95": np.nan}
            for m in MODELS
        ]
        ax.bar(
            np.arange(len(MODELS)) + j * width,
            [x["mean"] for x in st],
            width,
            yerr=np.nan_to_num([x["ci95"] for x in st]),
            capsize=3,
            label=clip,
        )
    ax.axhline(s["target_variance"], color="grey", ls=":", label="predict the mean")
    ax.set_xticks(np.arange(len(MODELS)) + width, MODELS)
    ax.set(ylabel="test MSE (runs that did not diverge)", title="final loss")
    ax.legend(fontsize=7)
    savefig(fig, out, "final_loss_spectral.png")


def _cell(results, m, clip, key, digits=3):
    v = _vals(results, m, clip, key)
    if not v:
        return "n/a"
    st = mean_ci(v)
    if key.startswith("grad_norm") or key.startswith("spectral"):  # spans many orders of magnitude
        return f"{st['mean']:.3g}" + ("" if st["n"] < 2 else f" ± {st['ci95']:.2g}")
    return fmt_ci(st, digits)


def render(results) -> str:
    s, clips = results["settings"], results["settings"]["clips"]
    n_seeds = len({r["seed"] for r in results["rows"]})
    lines = [
        f"# {TITLE}",
        "",
        f"Adding problem at L = {s['length']}, {s['n_train']} training sequences, {s['units']} units, "
        f"{s['optimizer'].upper()} at learning rate {s['learning_rate']:g}, batch {s['batch_size']}, "
        f"{s['epochs']} epochs; clipping threshold {s['clip']:g}; {n_seeds} seeds. Means ± 95% confidence "
        f"half-widths. Predicting the mean scores MSE {fmt(s['target_variance'])}.",
        "",
        "![gradient-norm traces and distributions](grad_norms.png)",
        "",
        "![final loss and spectral radius](final_loss_spectral.png)",
        "",
    ]
    table = []
    for m in MODELS:
        for clip in clips:
            runs = [r for r in results["rows"] if r["model"] == m and r["clip"] == clip]
            div = sum(r["diverged"] for r in runs)
            table.append(
                [
                    m,
                    clip,
                    f"{div}/{len(runs)}",
                    _cell(results, m, clip, "test_mse"),
                    _cell(results, m, clip, "grad_norm_median"),
                    _cell(results, m, clip, "grad_norm_p99", 2),
                    _cell(results, m, clip, "grad_norm_max", 2),
                    _cell(results, m, clip, "frac_steps_over_clip"),
                    _cell(results, m, clip, "spectral_radius_init"),
                    _cell(results, m, clip, "spectral_radius_final"),
                ]
            )
    lines += [
        markdown_table(
            [
                "model",
                "clipping",
                "diverged",
                "test MSE",
                "median grad norm",
                "p99 grad norm",
                "max grad norm",
                f"steps with norm > {s['clip']:g}",
                "spectral radius (init)",
                "spectral radius (final)",
            ],
            table,
        ),
        "",
        "Grad-norm statistics and spectral radii cover the steps before any divergence; test MSE only "
        "runs that finished.",
        "",
    ]
    lines += ["## What the numbers say", ""]
    for m in MODELS:
        none, gn = _vals(results, m, "none", "grad_norm_max"), _vals(results, m, "none", "grad_norm_median")
        div = sum(r["diverged"] for r in results["rows"] if r["model"] == m and r["clip"] == "none")
        total = sum(1 for r in results["rows"] if r["model"] == m and r["clip"] == "none")
        if none and gn:
            ratio = np.mean(none) / max(np.mean(gn), 1e-12)
            lines.append(
                f"- {m} without clipping: {div}/{total} runs diverged; the largest step's gradient norm is "
                f"{ratio:.3g}x the median step's ({np.mean(none):.3g} vs {np.mean(gn):.3g}), "
                + ("a heavy tail of spikes." if ratio > 10 else "no heavy tail at this setting.")
            )
        else:
            lines.append(f"- {m} without clipping: {div}/{total} runs diverged before a gradient norm was recorded.")
        for clip in clips[1:]:
            a, b = _vals(results, m, clip, "test_mse"), _vals(results, m, "none", "test_mse")
            cdiv = sum(r["diverged"] for r in results["rows"] if r["model"] == m and r["clip"] == clip)
            if a and b:
                lines.append(
                    f"  With {clip} ({cdiv} diverged): "
                    + verdict(clip, a, "no clipping", b, higher_is_better=False, what="test MSE")
                )
            else:
                lines.append(
                    f"  With {clip}: {cdiv}/{len(a) + cdiv} diverged (vs {div}/{total} without clipping); "
                    f"test MSE of the finished runs {fmt_ci(mean_ci(a)) if a else 'n/a'}; no finished "
                    "unclipped runs to compare with."
                    if a and not b
                    else f"  With {clip}: {cdiv} diverged; too few finished runs on one side to compare test MSE."
                )
        ri, rf = _vals(results, m, "none", "spectral_radius_init"), _vals(results, m, "none", "spectral_radius_final")
        if ri and rf:
            lines.append(
                f"  Spectral radius of the recurrent kernel (max over gates, no clipping): "
                f"{np.mean(ri):.3g} at initialization, {np.mean(rf):.3g} after training"
                + (" (above 1: the linearized recurrence can amplify)." if np.mean(rf) > 1 else ".")
            )
    mx = {m: _vals(results, m, "none", "grad_norm_max") for m in MODELS}
    if mx["lstm"] and mx["simple_rnn"]:
        lines += [
            "",
            "- Largest unclipped gradient norm, lstm vs simple_rnn: "
            + verdict(
                "lstm", mx["lstm"], "simple_rnn", mx["simple_rnn"], higher_is_better=False, what="max gradient norm"
            ),
        ]
    if mx["lstm"] and mx["gru"]:
        lines.append(
            "- Largest unclipped gradient norm, lstm vs gru: "
            + verdict("lstm", mx["lstm"], "gru", mx["gru"], higher_is_better=False, what="max gradient norm")
        )
    lines.append("")
    if results.get("quick"):
        lines += ["Quick mode: few epochs, a shorter L and 2 seeds; these verdicts are a smoke test, not evidence.", ""]
    return "\n".join(lines)
