"""Why does the LSTM need its gates?

``simple_rnn`` (no gates) vs ``lstm`` vs ``gru`` on two long-range dependency
tasks, over a growing lag L, plus where the gradient vanishes:

- adding problem: channel 0 is U(0, 1) noise, channel 1 marks two steps (one in
  the first 10% of the sequence, one in the second half); the target is the sum
  of the two marked values. Scored as R^2 = 1 - MSE / Var(target) (0 = no better
  than predicting the mean 1.0; 1 = solved).
- recall at lag L: a symbol (one of 4, one-hot) is shown at step 0, followed by
  L - 1 random distractor symbols (4 others); the label is the first symbol.
  Chance accuracy is 0.25.
- gradient flow: the norm of d loss / d x_t against the distance L - 1 - t from
  the loss, at initialization and after training on the adding problem.
"""

from __future__ import annotations

import numpy as np

from studies.common import fmt_ci, markdown_table, mean_ci, pyplot, savefig, seeds_for, train_model, verdict

NAME = "gating"
TITLE = "Gating: simple_rnn vs lstm vs gru on long-range dependencies"
MODELS = ("simple_rnn", "lstm", "gru")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--lags", default=None, help="comma-separated lags L (default 10,30,60,100; 10,40 with --quick)"
    )
    parser.add_argument("--units", type=int, default=32, help="units of every model")


def _settings(args) -> dict:
    lags = [int(v) for v in args.lags.split(",")] if args.lags else ([10, 40] if args.quick else [10, 30, 60, 100])
    if any(L < 4 for L in lags):
        raise ValueError(f"--lags must all be >= 4, got {lags}")
    return {
        "lags": lags,
        "units": args.units,
        "n_train": 1024 if args.quick else 3000,
        "n_test": 500,
        "epochs": 6 if args.quick else 20,
    }


def adding_data(n: int, L: int, rng: np.random.Generator):
    x = np.zeros((n, L, 2), "float32")
    x[..., 0] = rng.uniform(size=(n, L))
    first = rng.integers(0, max(1, L // 10), size=n)
    second = rng.integers(L // 2, L, size=n)
    x[np.arange(n), first, 1] = 1.0
    x[np.arange(n), second, 1] = 1.0
    y = x[np.arange(n), first, 0] + x[np.arange(n), second, 0]
    return x, y.astype("float32")


def recall_data(n: int, L: int, rng: np.random.Generator, symbols: int = 4):
    """Symbol y (one of ``symbols``) at step 0, then L - 1 random distractors from another ``symbols``."""
    y = rng.integers(0, symbols, size=n)
    tokens = np.concatenate([y[:, None], symbols + rng.integers(0, symbols, size=(n, L - 1))], axis=1)
    return np.eye(2 * symbols, dtype="float32")[tokens], y


def input_gradient_norms(model, x, y) -> np.ndarray:
    """Mean over the batch of ||d loss / d x_t|| for every step t."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(tf.square(model(x)[:, 0] - y))
    g = tape.gradient(loss, x)  # (batch, L, features)
    return tf.reduce_mean(tf.norm(g, axis=-1), axis=0).numpy()


def run(args, out) -> dict:
    import zoo

    s = _settings(args)
    rows, grads = [], {}
    L_grad = max(s["lags"])
    for seed in seeds_for(args):
        rng = np.random.default_rng(seed)
        for L in s["lags"]:
            xa, ya = adding_data(s["n_train"], L, rng)
            xat, yat = adding_data(s["n_test"], L, rng)
            xr, yr = recall_data(s["n_train"], L, rng)
            xrt, yrt = recall_data(s["n_test"], L, rng)
            for name in MODELS:
                config = zoo.ModelConfig(name, units=s["units"])
                model, _ = train_model(config, xa, ya, head="regression", epochs=s["epochs"], seed=seed)
                if L == L_grad and seed == 0:
                    import keras

                    keras.utils.set_random_seed(seed)
                    fresh = keras.models.clone_model(model)  # same architecture, fresh initial weights
                    grads[name] = {
                        "init": input_gradient_norms(fresh, xat[:256], yat[:256]).tolist(),
                        "trained": input_gradient_norms(model, xat[:256], yat[:256]).tolist(),
                    }
                mse = float(np.mean((model.predict(xat, verbose=0)[:, 0] - yat) ** 2))
                r2 = 1.0 - mse / float(np.var(yat))
                model, _ = train_model(config, xr, yr, head="classes:4", epochs=s["epochs"], seed=seed)
                acc = float((model.predict(xrt, verbose=0).argmax(-1) == yrt).mean())
                rows.append(
                    {"seed": seed, "model": name, "lag": L, "adding_r2": r2, "adding_mse": mse, "recall_acc": acc}
                )
    results = {"settings": s, "rows": rows, "grad_lag": L_grad, "grads": grads}
    _plot(results, out)
    return results


def _vals(results, model, lag, key):
    return [r[key] for r in results["rows"] if r["model"] == model and r["lag"] == lag]


def _plot(results, out) -> None:
    plt = pyplot()
    lags = results["settings"]["lags"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, label, ref in (
        (axes[0], "adding_r2", "adding problem R^2", 0.0),
        (axes[1], "recall_acc", "recall accuracy", 0.25),
    ):
        for m in MODELS:
            stats = [mean_ci(_vals(results, m, L, key)) for L in lags]
            ax.errorbar(
                lags,
                [st["mean"] for st in stats],
                yerr=np.nan_to_num([st["ci95"] for st in stats]),
                marker="o",
                capsize=3,
                label=m,
            )
        ax.axhline(ref, color="grey", ls=":", label="no skill")
        ax.set(xlabel="lag L", ylabel=label)
        ax.legend(fontsize=8)
    ax = axes[2]
    for m, g in results["grads"].items():
        for phase, style in (("init", ":"), ("trained", "-")):
            norms = np.asarray(g[phase])[::-1]  # index = distance from the loss
            ax.plot(np.arange(len(norms)), norms, style, color=f"C{MODELS.index(m)}", label=f"{m} ({phase})")
    ax.set(
        yscale="log",
        xlabel="distance from the loss (steps)",
        ylabel="||d loss / d x_t||",
        title=f"gradient reaching each input, L = {results['grad_lag']}",
    )
    ax.legend(fontsize=7)
    savefig(fig, out, "gating.png")


def _decay(norms) -> float:
    """Gradient norm at the step nearest the loss over the one farthest from it (time order in)."""
    norms = np.asarray(norms)
    return float(norms[-1] / norms[0]) if norms[0] > 0 else float("inf")


def render(results) -> str:
    s, lags = results["settings"], results["settings"]["lags"]
    n_seeds = len({r["seed"] for r in results["rows"]})
    lines = [
        f"# {TITLE}",
        "",
        f"{s['units']} units, one layer each, {s['n_train']} training sequences, {s['epochs']} epochs, "
        f"{n_seeds} seeds; means ± 95% confidence half-widths.",
        "",
        "![gating](gating.png)",
        "",
    ]
    for key, title in (
        ("adding_r2", "Adding problem, R^2 (0 = predicts the mean, 1 = solved)"),
        ("recall_acc", "Recall at lag L, accuracy (chance 0.25)"),
    ):
        lines += [f"## {title}", ""]
        table = [[m] + [fmt_ci(mean_ci(_vals(results, m, L, key))) for L in lags] for m in MODELS]
        lines += [markdown_table(["model"] + [f"L={L}" for L in lags], table), ""]
        L = max(lags)
        lines.append(
            f"At L = {L}: "
            + verdict(
                "lstm",
                _vals(results, "lstm", L, key),
                "simple_rnn",
                _vals(results, "simple_rnn", L, key),
                what=key.replace("_", " "),
            )
        )
        lines.append(
            f"At L = {L}: "
            + verdict(
                "gru",
                _vals(results, "gru", L, key),
                "simple_rnn",
                _vals(results, "simple_rnn", L, key),
                what=key.replace("_", " "),
            )
        )
        lines.append("")
    lines += [
        f"## Where the gradient vanishes (L = {results['grad_lag']}, seed 0)",
        "",
        "Ratio of ||d loss / d x_t|| at the step nearest the loss to the one farthest from it "
        "(larger = more vanishing):",
        "",
    ]
    table = [[m, f"{_decay(g['init']):.3g}", f"{_decay(g['trained']):.3g}"] for m, g in results["grads"].items()]
    lines += [markdown_table(["model", "at initialization", "after training"], table), ""]
    if results["grads"]:
        d = {m: _decay(g["init"]) for m, g in results["grads"].items()}
        worst = max(d, key=d.get)
        best = min(d, key=d.get)
        lines.append(
            f"At initialization the gradient shrinks most across the sequence in {worst} "
            f"(factor {d[worst]:.3g}) and least in {best} (factor {d[best]:.3g}); "
            "one seed, so read the ordering, not the exact factors."
        )
    return "\n".join(lines) + "\n"
