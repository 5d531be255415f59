"""Why are RNN weights shared over time, and what happens if they are not?

Task (synthetic, defined here): each sequence has a noise channel x_t ~ N(0, 1)
and a marker channel that is 1 at exactly one position p; the label is
``x_p > 0``. The rule is the same at every position, so a model that applies
one set of weights at every step can learn it anywhere and use it everywhere.

Compared: ``lstm`` (shared weights) vs ``unshared_rnn`` with ``cell="lstm"``
(the same LSTM equations with their own weights at every step), same units.

(a) markers only in the first half during training, tested in the second half;
(b) sequences shorter and longer than in training (the unshared model must be
    padded or cropped to its T);
(c) parameter count against T;
(d) the train/test gap with little data.
"""

from __future__ import annotations

import numpy as np

from studies.common import (
    accuracy,
    fmt,
    fmt_ci,
    markdown_table,
    mean_ci,
    pyplot,
    savefig,
    seeds_for,
    train_model,
    verdict,
)

NAME = "weight_sharing"
TITLE = "Weight sharing over time: shared LSTM vs unshared-weight unrolled LSTM"
MODELS = {
    "shared (lstm)": dict(model="lstm"),
    "unshared (unshared_rnn, lstm cell)": dict(model="unshared_rnn", cell="lstm"),
}


def add_arguments(parser) -> None:
    parser.add_argument("--timesteps", type=int, default=None, help="training length T (default 20; 10 with --quick)")
    parser.add_argument("--units", type=int, default=16, help="units of both models")


def _settings(args) -> dict:
    quick = args.quick
    return {
        "T": args.timesteps or (10 if quick else 20),
        "units": args.units,
        "n_train": 512 if quick else 2048,
        "n_test": 512 if quick else 2000,
        "small_ns": [64, 512] if quick else [64, 256, 2048],
        "epochs": 8 if quick else 25,
    }


def marker_data(n: int, T: int, positions, rng: np.random.Generator):
    """(x, y): x (n, T, 2) noise + one-hot marker; y = 1 where the marked value is positive."""
    x = np.zeros((n, T, 2), "float32")
    x[..., 0] = rng.normal(size=(n, T))
    pos = rng.choice(np.asarray(positions), size=n)
    x[np.arange(n), pos, 1] = 1.0
    y = (x[np.arange(n), pos, 0] > 0).astype("float32")
    return x, y


def fit_to_length(x: np.ndarray, T: int) -> np.ndarray:
    """What the unshared model must do with other lengths: left-pad with zeros or keep the last T steps."""
    if x.shape[1] >= T:
        return x[:, -T:]
    return np.concatenate([np.zeros((len(x), T - x.shape[1], x.shape[2]), x.dtype), x], axis=1)


def run(args, out) -> dict:
    import zoo

    s = _settings(args)
    T, half = s["T"], s["T"] // 2
    configs = {k: zoo.ModelConfig(units=s["units"], **v) for k, v in MODELS.items()}
    lengths = [half, T, 2 * T]
    rows, runs = [], []
    for seed in seeds_for(args):
        rng = np.random.default_rng(seed)
        x_first, y_first = marker_data(s["n_train"], T, range(half), rng)
        x_seen, y_seen = marker_data(s["n_test"], T, range(half), rng)
        x_unseen, y_unseen = marker_data(s["n_test"], T, range(half, T), rng)
        tests_by_len = {L: marker_data(s["n_test"], L, range(L), rng) for L in lengths}
        pool_x, pool_y = marker_data(max(s["small_ns"]), T, range(T), rng)
        for name, config in configs.items():
            model, _ = train_model(config, x_first, y_first, head="binary", epochs=s["epochs"], seed=seed)
            row = {
                "seed": seed,
                "model": name,
                "part": "a",
                "acc_seen_positions": accuracy(model, x_seen, y_seen),
                "acc_unseen_positions": accuracy(model, x_unseen, y_unseen),
            }
            rows.append(row)
            for n in s["small_ns"]:
                model, _ = train_model(
                    config,
                    pool_x[:n],
                    pool_y[:n],
                    head="binary",
                    epochs=max(s["epochs"], s["epochs"] * 512 // n // 2),
                    seed=seed,
                )
                x_test, y_test = tests_by_len[T]
                row = {
                    "seed": seed,
                    "model": name,
                    "part": "d",
                    "n_train": n,
                    "train_acc": accuracy(model, pool_x[:n], pool_y[:n]),
                    "test_acc": accuracy(model, x_test, y_test),
                }
                if n == max(s["small_ns"]):  # (b) lengths, on the best-trained models
                    for L, (xl, yl) in tests_by_len.items():
                        xin = xl if name.startswith("shared") else fit_to_length(xl, T)
                        row[f"acc_len_{L}"] = accuracy(model, xin, yl)
                rows.append(row)
            runs.append(name)
    results = {"settings": s, "lengths": lengths, "models": list(configs), "rows": rows}
    results["params"] = {
        name: {str(t): zoo.count_params(cfg, t, 2) for t in (5, 10, 20, 50, 100, 200)} for name, cfg in configs.items()
    }
    _plot(results, out)
    return results


def _values(results, model, part, key, **match):
    return [
        r[key]
        for r in results["rows"]
        if r["model"] == model and r["part"] == part and key in r and all(r.get(k) == v for k, v in match.items())
    ]


def _plot(results, out) -> None:
    plt = pyplot()
    names = results["models"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for i, key in enumerate(["acc_seen_positions", "acc_unseen_positions"]):
        means = [np.mean(_values(results, n, "a", key)) for n in names]
        errs = [mean_ci(_values(results, n, "a", key))["ci95"] for n in names]
        ax.bar(
            np.arange(len(names)) + 0.38 * i,
            means,
            0.38,
            yerr=np.nan_to_num(errs),
            capsize=4,
            label=key.replace("acc_", "").replace("_", " "),
        )
    ax.set_xticks(np.arange(len(names)) + 0.19, [n.split(" ")[0] for n in names])
    ax.axhline(0.5, color="grey", ls=":", label="chance")
    ax.set(ylabel="test accuracy", title="(a) trained with markers in the first half")
    ax.legend(fontsize=8)
    ax = axes[1]
    n_big = max(results["settings"]["small_ns"])
    for n in names:
        means = [np.mean(_values(results, n, "d", f"acc_len_{L}", n_train=n_big)) for L in results["lengths"]]
        ax.plot(results["lengths"], means, "o-", label=n.split(" ")[0])
    ax.axvline(results["settings"]["T"], color="grey", ls=":")
    ax.set(
        xlabel="test sequence length (training length dotted)",
        ylabel="test accuracy",
        title="(b) other lengths (unshared: padded/cropped)",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    for n in names:
        ts = sorted(int(t) for t in results["params"][n])
        ax.plot(ts, [results["params"][n][str(t)] for t in ts], "o-", label=n.split(" ")[0])
    ax.set(xlabel="T", ylabel="parameters", yscale="log", title="(c) parameters vs T")
    ax.legend(fontsize=8)
    savefig(fig, out, "weight_sharing.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    for n in names:
        ns = results["settings"]["small_ns"]
        gaps = [
            np.mean(_values(results, n, "d", "train_acc", n_train=k))
            - np.mean(_values(results, n, "d", "test_acc", n_train=k))
            for k in ns
        ]
        ax.plot(ns, gaps, "o-", label=n.split(" ")[0])
    ax.set(xscale="log", xlabel="training examples", ylabel="train - test accuracy", title="(d) generalization gap")
    ax.legend(fontsize=8)
    savefig(fig, out, "gap.png")


def render(results) -> str:
    s, names = results["settings"], results["models"]
    shared, unshared = names
    n_seeds = len({r["seed"] for r in results["rows"]})
    lines = [
        f"# {TITLE}",
        "",
        f"Synthetic marker task (T = {s['T']}, {s['units']} units, {n_seeds} seeds, {s['epochs']}+ epochs, "
        f"{s['n_train']} training sequences for (a)). Means ± 95% confidence half-widths over seeds.",
        "",
        "![weight sharing](weight_sharing.png)",
        "",
        "## (a) A rule learned at some positions, tested at others",
        "",
    ]
    table = []
    for n in names:
        table.append(
            [
                n,
                fmt_ci(mean_ci(_values(results, n, "a", "acc_seen_positions"))),
                fmt_ci(mean_ci(_values(results, n, "a", "acc_unseen_positions"))),
            ]
        )
    lines += [markdown_table(["model", "accuracy, seen positions", "accuracy, unseen positions"], table), ""]
    lines.append(
        verdict(
            shared,
            _values(results, shared, "a", "acc_unseen_positions"),
            unshared,
            _values(results, unshared, "a", "acc_unseen_positions"),
            what="accuracy at positions never marked in training",
        )
    )
    un_unseen = mean_ci(_values(results, unshared, "a", "acc_unseen_positions"))
    if abs(un_unseen["mean"] - 0.5) <= max(0.05, un_unseen["ci95"] if n_seeds > 1 else 0.05):
        lines.append(
            f"The unshared model is at chance ({fmt(un_unseen['mean'])}) where it never saw a marker: "
            "its weights at those steps never learned the rule."
        )
    n_big = max(s["small_ns"])
    lines += [
        "",
        f"## (b) Other lengths (trained at T = {s['T']} on {n_big} sequences)",
        "",
        f"The shared model runs any length as is. The unshared model has weights for exactly {s['T']} steps, "
        "so shorter inputs are left-padded with zeros and longer ones cropped to their last "
        f"{s['T']} steps (a marker in the cropped part is lost).",
        "",
    ]
    table = [
        [n] + [fmt_ci(mean_ci(_values(results, n, "d", f"acc_len_{L}", n_train=n_big))) for L in results["lengths"]]
        for n in names
    ]
    lines += [markdown_table(["model"] + [f"length {L}" for L in results["lengths"]], table), ""]
    lines += ["## (c) Parameters against T", ""]
    ts = sorted(int(t) for t in results["params"][shared])
    lines += [
        markdown_table(
            ["model"] + [f"T={t}" for t in ts], [[n] + [f"{results['params'][n][str(t)]:,}" for t in ts] for n in names]
        ),
        "",
    ]
    p = results["params"]
    lines.append(
        f"The shared model's size does not depend on T; the unshared one grows linearly "
        f"({p[unshared][str(ts[-1])] / p[unshared][str(ts[0])]:.0f}x from T={ts[0]} to T={ts[-1]})."
    )
    lines += ["", "## (d) The train/test gap with little data", "", "![gap](gap.png)", ""]
    table = []
    for n in names:
        for k in s["small_ns"]:
            tr, te = _values(results, n, "d", "train_acc", n_train=k), _values(results, n, "d", "test_acc", n_train=k)
            table.append([n, k, fmt_ci(mean_ci(tr)), fmt_ci(mean_ci(te)), fmt(np.mean(tr) - np.mean(te))])
    lines += [markdown_table(["model", "train examples", "train acc", "test acc", "gap"], table), ""]
    k = min(s["small_ns"])
    gaps = {
        n: [
            a - b
            for a, b in zip(
                _values(results, n, "d", "train_acc", n_train=k),
                _values(results, n, "d", "test_acc", n_train=k),
                strict=True,
            )
        ]
        for n in names
    }
    lines.append(
        f"With {k} examples: "
        + verdict(shared, gaps[shared], unshared, gaps[unshared], higher_is_better=False, what="train-test gap")
    )
    return "\n".join(lines) + "\n"
