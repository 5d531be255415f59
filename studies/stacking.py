"""What does depth buy? 1, 2, 3 and 4-layer LSTMs, matched and unmatched in parameters.

- ``lstm`` for one layer, ``stacked_lstm`` for 2+ layers, no dropout (so that
  overfitting can show).
- same units: every layer has the 1-layer model's units, so parameters grow
  with depth;
- matched: units chosen per depth so that the recurrent body has about the
  parameter count of the 1-layer model (the closest integer width).

Two real tasks through their task APIs (``load_data``/``build_model``/``compile``)
and ``zoo.training.fit``:

- classify: JapaneseVowels (9 speakers, 12 LPC channels, 7-29 steps; bundled
  UEA data), validation drawn from the training file, scored on the official
  test file (accuracy, higher is better);
- textgen: a character language model on a slice of the offline Shakespeare
  corpus (nats/char, lower is better), training loss measured on fixed
  training windows, validation/test on held-out text.

For every run: train, validation and test scores, and the generalization gap
(train - test accuracy; test - train loss).
"""

from __future__ import annotations

import numpy as np

from studies.common import fmt, fmt_ci, markdown_table, mean_ci, pyplot, savefig, seeds_for, verdict, welch_p

NAME = "stacking"
TITLE = "Stacking: 1-4 layer LSTMs at matched and unmatched parameter counts"
TASKS = ("classify", "textgen")
# (score key, higher is better, label) per task
SCORE = {"classify": ("test_acc", True, "test accuracy"), "textgen": ("test_loss", False, "test loss (nats/char)")}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--depths", default=None, help="comma-separated depths, must include 1 (default 1,2,3,4; 1,2,4 with --quick)"
    )
    parser.add_argument(
        "--units",
        type=int,
        default=None,
        help="units of the 1-layer models (default 64; 32 classify / 48 textgen with --quick)",
    )


def _settings(args) -> dict:
    q = args.quick
    depths = sorted({int(d) for d in (args.depths or ("1,2,4" if q else "1,2,3,4")).split(",")})
    if depths[0] != 1:
        raise ValueError(f"--depths must include 1 (the reference model), got {args.depths}")
    return {
        "depths": depths,
        "classify": {
            "units": args.units or (32 if q else 64),
            "epochs": 8 if q else 60,
            "batch_size": 64 if q else 16,
            "learning_rate": 3e-3,
            "dataset": "JapaneseVowels",
        },
        "textgen": {
            "units": args.units or (48 if q else 128),
            "epochs": 3 if q else 15,
            "seq_len": 32 if q else 64,
            "batch_size": 32 if q else 64,
            "steps_per_epoch": 5 if q else 60,
            "max_chars": 20000 if q else 300000,
            "embedding_dim": 32,
            "learning_rate": 1e-2 if q else 3e-3,
        },
    }


def _config(depth: int, units: int, return_sequences: bool):
    import zoo

    return zoo.ModelConfig(
        "lstm" if depth == 1 else "stacked_lstm", units=units, num_layers=depth, return_sequences=return_sequences
    )


def matched_units(depth: int, base_units: int, features: int) -> tuple[int, int]:
    """(units, params) of the ``depth``-layer body whose parameter count is closest to the 1-layer one's."""
    import zoo

    target = zoo.count_params(_config(1, base_units, False), None, features)
    best = min(
        range(2, base_units + 1), key=lambda u: abs(zoo.count_params(_config(depth, u, False), None, features) - target)
    )
    return best, zoo.count_params(_config(depth, best, False), None, features)


def _variants(s, task, features):
    import zoo

    u = s[task]["units"]
    out = [("base", 1, u, zoo.count_params(_config(1, u, False), None, features))]
    for d in s["depths"][1:]:
        out.append(("same units", d, u, zoo.count_params(_config(d, u, False), None, features)))
        mu, mp = matched_units(d, u, features)
        out.append(("matched", d, mu, mp))
    return out


def _classify(s, seed):
    import warnings

    import tasks.sequence_classification as C
    from tasks import common
    from zoo.training import fit

    c = s["classify"]
    options = C.Options(dataset=c["dataset"], batch_size=c["batch_size"], seed=seed, model="lstm")
    data = C.load_data(options)
    features = data.spec.channels

    def train(config):
        common.set_seed(seed)
        model = C.compile(C.build_model(config, data), data, learning_rate=c["learning_rate"], jit_compile=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            fit(model, data.train, data.val, epochs=c["epochs"], monitor=False, verbose=0)
        out = {}
        for split, ds in (("train", data.train), ("val", data.val), ("test", data.test)):
            res = model.evaluate(ds, verbose=0, return_dict=True)
            out[f"{split}_loss"], out[f"{split}_acc"] = float(res["loss"]), float(res["accuracy"])
        out["gap"] = out["train_acc"] - out["test_acc"]
        return out

    return train, features, dict(data.provenance)


def _textgen(s, seed):
    import tasks.text_generation as T
    from tasks import common
    from zoo.training import fit

    t = s["textgen"]
    options = T.Options(
        seq_len=t["seq_len"],
        batch_size=t["batch_size"],
        steps_per_epoch=t["steps_per_epoch"],
        max_chars=t["max_chars"],
        embedding_dim=t["embedding_dim"],
        seed=seed,
    )
    data = T.load_data(options)
    train_windows = T.windows(data.ids["train"][: 40 * t["seq_len"] * 8], t["seq_len"], t["batch_size"])

    def train(config):
        common.set_seed(seed)
        model = T.build_model(config, data)
        T.compile(model, data, learning_rate=t["learning_rate"], jit_compile=False)
        fit(
            model,
            data.train,
            data.val,
            epochs=t["epochs"],
            steps_per_epoch=data.steps_per_epoch,
            monitor=False,
            verbose=0,
        )
        out = {}
        for split, ds in (("train", train_windows), ("val", data.val), ("test", data.test)):
            res = model.evaluate(ds, verbose=0, return_dict=True)
            out[f"{split}_loss"], out[f"{split}_acc"] = float(res["loss"]), float(res["accuracy"])
        out["gap"] = out["test_loss"] - out["train_loss"]
        return out

    return train, t["embedding_dim"], {"characters": data.provenance["characters"], "vocabulary": len(data.vocab)}


def run(args, out) -> dict:
    s = _settings(args)
    rows, data_info = [], {}
    for task in TASKS:
        for seed in seeds_for(args, task):
            train, features, info = (_classify if task == "classify" else _textgen)(s, seed)
            data_info[task] = info
            for match, depth, units, params in _variants(s, task, features):
                ret_seq = task == "textgen"
                scores = train(_config(depth, units, ret_seq))
                rows.append(
                    {
                        "task": task,
                        "match": match,
                        "depth": depth,
                        "units": units,
                        "params": params,
                        "seed": seed,
                        **scores,
                    }
                )
    results = {"settings": s, "rows": rows, "data": data_info}
    _plot(results, out)
    return results


def _vals(results, task, match, depth, key):
    """Depth 1 (``base``) belongs to both series."""
    return [
        r[key]
        for r in results["rows"]
        if r["task"] == task and r["depth"] == depth and (r["match"] == match or r["match"] == "base")
    ]


def _plot(results, out) -> None:
    plt = pyplot()
    depths = results["settings"]["depths"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for row, task in enumerate(TASKS):
        metric = "acc" if task == "classify" else "loss"
        for col, match in enumerate(("same units", "matched")):
            ax = axes[row, col]
            for split, style in (("train", "s--"), ("val", "^:"), ("test", "o-")):
                st = [mean_ci(_vals(results, task, match, d, f"{split}_{metric}")) for d in depths]
                ax.errorbar(
                    depths,
                    [x["mean"] for x in st],
                    yerr=np.nan_to_num([x["ci95"] for x in st]),
                    fmt=style,
                    capsize=3,
                    label=split,
                )
            params = [int(np.mean(_vals(results, task, match, d, "params"))) for d in depths]
            ax.set_xticks(depths, [f"{d}\n({p:,} params)" for d, p in zip(depths, params, strict=True)])
            ax.set(
                xlabel="layers", ylabel="accuracy" if metric == "acc" else "loss (nats/char)", title=f"{task}: {match}"
            )
            ax.legend(fontsize=8)
    savefig(fig, out, "stacking.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, TASKS, strict=True):
        for match in ("same units", "matched"):
            st = [mean_ci(_vals(results, task, match, d, "gap")) for d in depths]
            ax.errorbar(
                depths,
                [x["mean"] for x in st],
                yerr=np.nan_to_num([x["ci95"] for x in st]),
                marker="o",
                capsize=3,
                label=match,
            )
        ax.axhline(0, color="grey", ls=":")
        ax.set(
            xlabel="layers",
            ylabel="train - test accuracy" if task == "classify" else "test - train loss",
            title=f"{task}: generalization gap (higher = more overfitting)",
        )
        ax.legend(fontsize=8)
    savefig(fig, out, "stacking_gap.png")


def render(results) -> str:
    s, depths = results["settings"], results["settings"]["depths"]
    n_seeds = len({r["seed"] for r in results["rows"]})
    deep = max(depths)
    lines = [
        f"# {TITLE}",
        "",
        f"{n_seeds} seeds per setting; means ± 95% confidence half-widths. Depth 1 is the same model in both "
        "series. Parameters are those of the recurrent body (the task's input and output layers are the same "
        "for every depth).",
        "",
        "![train, validation and test against depth](stacking.png)",
        "",
        "![generalization gap](stacking_gap.png)",
        "",
    ]
    c, t = s["classify"], s["textgen"]
    d = results["data"]
    lines += [
        f"- classify: {c['dataset']}, {d['classify'].get('train')} train / {d['classify'].get('val')} validation "
        f"/ {d['classify'].get('test')} test sequences, {c['epochs']} epochs, batch {c['batch_size']}, "
        f"base width {c['units']} units.",
        f"- textgen: {d['textgen']['characters']['train']} training characters, windows of {t['seq_len']}, "
        f"{t['epochs']} epochs of {t['steps_per_epoch']} batches, base width {t['units']} units.",
        "",
    ]
    for task in TASKS:
        key, higher, label = SCORE[task]
        metric = "acc" if task == "classify" else "loss"
        lines += [f"## {task}", ""]
        table = []
        for match in ("same units", "matched"):
            for dep in depths:
                if dep == 1 and match == "matched":
                    continue
                m = "base" if dep == 1 else match
                table.append(
                    [
                        dep,
                        m,
                        int(np.mean(_vals(results, task, match, dep, "units"))),
                        int(np.mean(_vals(results, task, match, dep, "params"))),
                    ]
                    + [
                        fmt_ci(mean_ci(_vals(results, task, match, dep, f"{sp}_{metric}")))
                        for sp in ("train", "val", "test")
                    ]
                    + [fmt_ci(mean_ci(_vals(results, task, match, dep, "gap")))]
                )
        gap_name = "train - test acc" if task == "classify" else "test - train loss"
        lines += [
            markdown_table(
                ["layers", "series", "units", "params", f"train {metric}", f"val {metric}", f"test {metric}", gap_name],
                table,
            ),
            "",
        ]
        for match in ("same units", "matched"):
            base = _vals(results, task, match, 1, key)
            best = (max if higher else min)(depths, key=lambda dep, m=match: np.mean(_vals(results, task, m, dep, key)))
            lines.append(
                f"- {match}: "
                + verdict(
                    f"{deep} layers",
                    _vals(results, task, match, deep, key),
                    "1 layer",
                    base,
                    higher_is_better=higher,
                    what=label,
                )
            )
            if best != 1:
                lines.append(
                    f"  The best mean {label} is at {best} layers "
                    f"({fmt(np.mean(_vals(results, task, match, best, key)))}); "
                    + verdict(
                        f"{best} layers",
                        _vals(results, task, match, best, key),
                        "1 layer",
                        base,
                        higher_is_better=higher,
                        what=label,
                    )
                )
            else:
                lines.append(f"  The best mean {label} is at 1 layer ({fmt(np.mean(base))}): depth did not help here.")
            gap_deep, gap_one = _vals(results, task, match, deep, "gap"), _vals(results, task, match, 1, "gap")
            lines.append(
                "  Overfitting: "
                + verdict(
                    f"{deep} layers",
                    gap_deep,
                    "1 layer",
                    gap_one,
                    higher_is_better=False,
                    what=f"generalization gap ({gap_name})",
                )
            )
            train_deep = _vals(results, task, match, deep, f"train_{metric}")
            train_one = _vals(results, task, match, 1, f"train_{metric}")
            fits_worse = (
                np.mean(train_deep) < np.mean(train_one) if higher else np.mean(train_deep) > np.mean(train_one)
            )
            if np.mean(gap_deep) < np.mean(gap_one) and fits_worse and welch_p(train_deep, train_one) < 0.05:
                lines.append(
                    "  Fit: "
                    + verdict(
                        f"{deep} layers",
                        train_deep,
                        "1 layer",
                        train_one,
                        higher_is_better=higher,
                        what=f"train {metric}",
                    )
                    + f" The {deep}-layer model underfits in this training budget, so its smaller gap "
                    "does not show that depth generalizes better."
                )
        lines.append("")
    if results.get("quick"):
        lines += [
            "Quick mode: few epochs, small widths and 2 seeds; these verdicts are a smoke test, not evidence.",
            "",
        ]
    return "\n".join(lines)
