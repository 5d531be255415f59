"""Next-day movement: will tomorrow's close be above today's, from the last ``window`` days?

    seqzoo train movement --model gru --window 30            # S&P 500 1999-2018 (offline, from arch)
    seqzoo train movement --dataset nasdaq --quick
    python -m tasks.movement --csv prices.csv --price-column Close

    from tasks import movement
    result = movement.run(movement.Options(csv="prices.csv", window=20))

Features (log return, high/low range, open-to-close body, volume change) use
day t and t-1 only; labels, splits and scaling are in :mod:`.features`. The
model is evaluated on the chronological test period and by walk-forward
(expanding-window) folds against always-up, persistence and logistic
regression on the same days. The export's ``serve`` takes raw daily rows and
returns P(up): feature computation and scaling are inside the SavedModel.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tasks.common import (
    check_folders,
    distribution_strategy,
    finish_run,
    resolve_run_dir,
    schedule_callbacks,
    set_seed,
    strategy_scope,
)
from tasks.movement.data import DATASETS, Prices, load_prices
from tasks.options import Result, TaskOptions, default, main_for, one_of, option, positive_int
from zoo import files as run_files
from zoo.config import ModelConfig
from zoo.errors import ConfigError

if TYPE_CHECKING:  # the features module imports Keras: its names load where they are used
    from tasks.movement.features import SplitIndex

TASK = "movement"
OBJECTIVE = ("val_balanced_accuracy", "max")
QUICK_SAMPLES = 360  # labelled days small_data keeps (the most recent ones)
SPLITS = ("train", "val", "test")
CLASS_WEIGHTS = ("balanced", "none")


@dataclass
class TaskData:
    """Batched train/val/test datasets plus the arrays the baselines and the export need.

    ``x[split]``: scaled feature windows (n, window, F); ``y[split]``: labels (n,);
    ``days[split]``: row index ``t`` of each sample's last day in ``prices.frame``.
    """

    train: Any
    val: Any
    test: Any
    spec: dict[str, Any]
    provenance: dict[str, Any]
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    days: dict[str, np.ndarray]
    prices: Prices
    scaler: Any  # keras.layers.Normalization fitted on the training period

    def raw_windows(self, split: str) -> np.ndarray:
        """Raw rows ``t - window .. t`` of each sample: what ``serve`` takes (n, window + 1, C)."""
        from tasks.movement.features import windows

        rows = windows(self.prices.frame.to_numpy(np.float32), self.spec["window"] + 1)
        return rows[self.days[split] - self.spec["window"]]


# ----------------------------------------------------------------------------- API


@dataclass(frozen=True)
class Options(TaskOptions):
    """Every setting of ``seqzoo train movement``; see :class:`tasks.options.TaskOptions` for the shared ones.

    Prices come from ``csv``, else ``ticker`` (yfinance), else the offline ``dataset``.
    """

    # Walk-forward retrains a model per fold, so the smoke-run preset skips it.
    QUICK: ClassVar[dict[str, Any]] = {**TaskOptions.QUICK, "folds": 0}

    # data
    dataset: str = option("sp500", "offline daily OHLCV 1999-2018 shipped by arch", group="data", choices=DATASETS)
    csv: str | None = option(
        None,
        "your daily prices: Yahoo-style (Date,Open,High,Low,Close,Adj Close,Volume) or a "
        "date column + one price column (overrides dataset)",
        group="data",
    )
    price_column: str | None = option(None, "use only this column as the close (price-only features)", group="data")
    date_column: str | None = option(
        None, "date column name (None: the first of Date/Datetime/Timestamp/Time/Day, any case)", group="data"
    )
    ticker: str | None = option(
        None,
        "download daily prices with yfinance (pip install 'seqzoo[yfinance]'; needs internet; overrides dataset)",
        group="data",
    )
    start: str | None = option(None, "first date of the ticker download (YYYY-MM-DD)", group="data")
    end: str | None = option(None, "end date of the ticker download (YYYY-MM-DD)", group="data")
    sort_dates: bool = option(False, "sort rows by date instead of failing on unsorted dates (counted)", group="data")
    drop_duplicates: bool = option(
        False, "keep the last row of a repeated date instead of failing (counted)", group="data"
    )
    drop_bad_rows: bool = option(
        False, "drop rows with missing/non-numeric/non-positive values instead of failing (counted)", group="data"
    )
    # task
    window: int = option(30, "days of features per sample (serve takes window + 1 raw rows)", group="task")
    val_fraction: float = option(0.15, "validation period: this fraction of labelled days after train", group="task")
    test_fraction: float = option(0.15, "test period: the last fraction of labelled days", group="task")
    folds: int = option(
        5,
        "walk-forward expanding-window folds, each retrained from scratch (0: skip, as the quick preset does)",
        group="task",
    )
    patience: int = option(3, "early stopping patience on val_balanced_accuracy (epochs)", group="task")
    class_weight: str = option(
        "balanced",
        "balanced: weight up and down days equally in the loss (and in the logistic baseline); none: unweighted",
        group="task",
        choices=CLASS_WEIGHTS,
    )
    # The task's own defaults for shared settings.
    model: str = default("model", "gru")
    units: int = default("units", 32)
    epochs: int = default("epochs", 15)
    batch_size: int = default("batch_size", 64)
    learning_rate: float = default("learning_rate", 1e-3)

    def __post_init__(self) -> None:
        from tasks.movement.features import check_fractions

        super().__post_init__()
        one_of("dataset", self.dataset, DATASETS)
        if self.csv is not None and self.ticker is not None:
            raise ConfigError(
                "ticker",
                self.ticker,
                "None when csv (--csv) is set",
                "Read prices from csv (--csv) or download them with ticker (--ticker), not both",
            )
        for name in ("start", "end"):
            if getattr(self, name) is not None and self.ticker is None:
                raise ConfigError(
                    name,
                    getattr(self, name),
                    "None unless ticker (--ticker) is set",
                    "start (--start) and end (--end) choose the dates of a ticker (--ticker) download",
                )
        positive_int("window", self.window)
        check_fractions(self.val_fraction, self.test_fraction)
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 0 or self.folds == 1:
            raise ConfigError("folds", self.folds, "0 (skip walk-forward) or an integer >= 2")
        positive_int("patience", self.patience)
        one_of("class_weight", self.class_weight, CLASS_WEIGHTS)


def _dataset(x: np.ndarray, y: np.ndarray, batch_size: int, weights: np.ndarray | None = None, seed: int | None = None):
    import tensorflow as tf

    parts = (x.astype(np.float32), y.astype(np.float32)[:, None]) + (
        () if weights is None else (weights.astype(np.float32),)
    )
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_data(
    prices: Prices,
    window: int,
    split: SplitIndex,
    *,
    batch_size: int = 64,
    class_weight: str = "balanced",
    seed: int = 0,
) -> TaskData:
    """Scaled windows, labels and datasets for one chronological split of ``prices``."""
    import keras

    from tasks.movement.features import FEATURES, LABEL, feature_names, labels, normalizer, series_features, windows

    features = series_features(prices.frame)  # (N - 1, F): row i is day i + 1
    scaler = normalizer(features, window, split.train)
    scaled = keras.ops.convert_to_numpy(scaler(features))
    n = split.test
    x_all = windows(scaled, window)[:n]  # sample j: feature rows j .. j + window - 1 = days j + 1 .. j + window
    y_all = labels(prices.close)[window : window + n]  # label of day t = j + window
    days_all = np.arange(window, window + n)
    ranges = split.ranges()
    x = {k: x_all[r] for k, r in ranges.items()}
    y = {k: y_all[r] for k, r in ranges.items()}
    days = {k: days_all[r] for k, r in ranges.items()}
    weights = None
    counts = np.bincount(y["train"], minlength=2)
    if class_weight == "balanced" and counts.all():
        weights = (len(y["train"]) / (2.0 * counts))[y["train"]]
    dates = prices.frame.index
    close = prices.close
    spec = {
        "window": window,
        "columns": list(prices.columns),
        "features": list(feature_names(prices.columns)),
        "feature_definitions": {k: FEATURES[k][1] for k in feature_names(prices.columns)},
        "label": LABEL,
        "mean": np.asarray(scaler.mean).ravel().tolist(),
        "variance": np.asarray(scaler.variance).ravel().tolist(),
        "scaling_fitted_on": f"features of days {dates[1].date()} .. {dates[split.train + window - 1].date()} (training windows only)",
        "class_weight": class_weight,
        "splits": {
            k: {
                "days": int(len(days[k])),
                "first": str(dates[days[k][0]].date()) if len(days[k]) else None,
                "last": str(dates[days[k][-1]].date()) if len(days[k]) else None,
                "up_fraction": round(float(y[k].mean()), 4) if len(y[k]) else None,
            }
            for k in SPLITS
        },
        "ties": int((close[window + 1 : window + n + 1] == close[window : window + n]).sum()),
    }
    return TaskData(
        train=_dataset(x["train"], y["train"], batch_size, weights, seed=seed),
        val=_dataset(x["val"], y["val"], batch_size),
        test=_dataset(x["test"], y["test"], batch_size),
        spec=spec,
        provenance=prices.provenance,
        x=x,
        y=y,
        days=days,
        prices=prices,
        scaler=scaler,
    )


def load_data(options: Options) -> TaskData:
    """The chronological train/val/test split of the prices ``options`` select (with ``small_data``, of the
    last ``QUICK_SAMPLES`` labelled days)."""
    from tasks.movement.features import chronological_split, num_samples

    prices = load_prices(options)
    if options.small_data:
        prices = prices.tail(QUICK_SAMPLES + options.window + 1)
    n = num_samples(len(prices.frame), options.window)
    split = chronological_split(
        n, options.val_fraction, options.test_fraction, window=options.window, path=options.csv or None
    )
    return make_data(
        prices,
        options.window,
        split,
        batch_size=options.batch_size,
        class_weight=options.class_weight,
        seed=options.seed,
    )


def build_model(config: ModelConfig, data: TaskData):
    """Scaled feature windows (batch, window, F) -> zoo body -> P(up) (batch, 1)."""
    import keras

    import zoo

    if config.return_sequences:
        raise ValueError("The movement task predicts one direction per window; use return_sequences=False")
    window, num_features = data.spec["window"], len(data.spec["features"])
    inputs = keras.Input((window, num_features), name="features")
    body = zoo.apply(config, inputs)  # (batch, units')
    p_up = keras.layers.Dense(1, activation="sigmoid", name="p_up")(body)
    return zoo.SeqModel(inputs, p_up, name=f"movement_{config.model}")


def compile(model, data: TaskData, **training_kwargs):  # noqa: A001 - the task-module API name
    """Binary cross-entropy; logs accuracy and balanced_accuracy (the tuner's objective)."""
    from tasks.movement.evaluate import BalancedAccuracy
    from zoo.training import compile_model

    return compile_model(model, loss="binary_crossentropy", metrics=["accuracy", BalancedAccuracy()], **training_kwargs)


def train(
    config: ModelConfig,
    data: TaskData,
    options: Options,
    run_dir: Path | None = None,
    verbose: int | str = "auto",
    **fit_overrides,
):
    """Build, compile and fit with early stopping on val_balanced_accuracy (best weights restored).

    The shared training settings (``bptt``, gradient-norm ``monitor``, ``resume``) reach
    ``zoo.training.fit`` through ``options.fit_kwargs()``; ``fit_overrides`` win.
    """
    import keras

    from zoo.training import fit

    with strategy_scope(options):  # variables mirrored over the replicas
        model = compile(build_model(config, data), data, **options.training_kwargs())
    stop = keras.callbacks.EarlyStopping(
        monitor=OBJECTIVE[0], mode=OBJECTIVE[1], patience=options.patience, restore_best_weights=True
    )
    kwargs = {**options.fit_kwargs(), **fit_overrides}
    history = fit(
        model,
        data.train,
        data.val,
        epochs=options.epochs,
        run_dir=run_dir,
        callbacks=[stop, *schedule_callbacks(options)],
        verbose=verbose,
        **kwargs,
    )
    return model, history


def predict_up(model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, verbose=0).ravel()


def evaluate_split(model, data: TaskData, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """The model and the baselines on the test days of ``data``."""
    from tasks.movement import evaluate as ev

    days, close = data.days["test"], data.prices.close
    predictions = {ev.MODEL: (predict_up(model, data.x["test"]) > 0.5).astype(int)}
    class_weight = "balanced" if data.spec["class_weight"] == "balanced" else None
    today_up = close[days] > close[days - 1]
    predictions.update(
        ev.baseline_predictions(
            data.x["train"], data.y["train"], data.x["test"], today_up, class_weight=class_weight, seed=seed
        )
    )
    result = ev.evaluate(data.y["test"], predictions, ev.majority_class(data.y["train"]))
    next_log_return = np.log(close[days + 1] / close[days])
    result["strategy_total_return"] = {
        name: ev.strategy_returns(next_log_return, pred)["long_flat"] for name, pred in predictions.items()
    }
    result["strategy_total_return"]["buy-and-hold"] = ev.strategy_returns(next_log_return, predictions[ev.MODEL])[
        "buy_and_hold"
    ]
    return result, predictions


def run_walk_forward(config: ModelConfig, prices: Prices, options: Options, *, verbose: int | str = "auto") -> dict:
    """Retrain from scratch on each expanding window; score every fold and all folds pooled."""
    import tensorflow as tf
    from tqdm import tqdm

    from tasks.movement import evaluate as ev
    from tasks.movement.features import num_samples, walk_forward

    tf.get_logger().setLevel("ERROR")  # a fresh model per fold retraces by design; TF would warn about it
    n = num_samples(len(prices.frame), options.window)
    splits = walk_forward(n, options.folds, options.val_fraction)
    folds, pooled_y, pooled = [], [], {}
    for k, split in enumerate(tqdm(splits, desc="walk-forward folds", unit="fold", disable=verbose == 0)):
        set_seed(options.seed + k + 1)
        data = make_data(
            prices,
            options.window,
            split,
            batch_size=options.batch_size,
            class_weight=options.class_weight,
            seed=options.seed,
        )
        model, history = train(config, data, options, verbose=0, monitor=False)  # no run folder: nothing to resume
        result, predictions = evaluate_split(model, data, options.seed)
        folds.append({"fold": k + 1, "splits": data.spec["splits"], "epochs": len(history.epoch), **result})
        pooled_y.append(data.y["test"])
        for name, pred in predictions.items():
            pooled.setdefault(name, []).append(pred)
    majorities = {f["majority"] for f in folds}
    majority = majorities.pop() if len(majorities) == 1 else "per fold: " + ", ".join(f["majority"] for f in folds)
    pooled_eval = ev.evaluate(np.concatenate(pooled_y), {k: np.concatenate(v) for k, v in pooled.items()}, majority)
    return {"folds": folds, "pooled": pooled_eval}


def report_text(data: TaskData, test: dict, walk: dict | None, config: ModelConfig) -> str:
    from tasks.movement import evaluate as ev

    prov, spec = data.provenance, data.spec
    s = spec["splits"]
    lines = [
        f"# movement: {config.model} on {prov['source']}",
        "",
        f"Rows: {prov['rows_read']} read, {prov['rows_used']} used ({prov['first_date']} .. {prov['last_date']}); "
        f"dropped {prov['dropped_bad_rows']} bad rows{' ' + str(prov['bad_rows_by_reason']) if prov['bad_rows_by_reason'] else ''} and {prov['dropped_duplicate_dates']} duplicate dates; "
        f"{prov['reordered_rows']} rows reordered; {prov['gaps_over_4_days']} gaps over 4 calendar days (largest {prov['largest_gap_days']} days)"
        + (
            f"; small_data kept the last {prov['quick_cut_to_last_rows']} rows"
            if "quick_cut_to_last_rows" in prov
            else ""
        )
        + ".",
        f"Label: {spec['label']}; {spec['ties']} ties in the labelled days. Features over {spec['window']} days: {', '.join(spec['features'])}.",
        "Splits (chronological): "
        + "; ".join(
            f"{k} {v['days']} days {v['first']} .. {v['last']} (up {v['up_fraction']:.1%})" for k, v in s.items()
        ),
        "",
        f"## Test period ({s['test']['first']} .. {s['test']['last']}, {test['days']} days, up {test['up_fraction']:.1%})",
        "",
        ev.table(test),
        "",
        f"**{test['verdict']}**",
        "",
        "Total return over the test period, long/flat on each predictor's calls (no transaction costs): "
        + ", ".join(f"{ev.label(k, test['majority'])} {v:+.1%}" for k, v in test["strategy_total_return"].items())
        + ".",
    ]
    if walk:
        lines += ["", f"## Walk-forward: {len(walk['folds'])} expanding-window folds, each retrained from scratch", ""]
        names = list(walk["pooled"]["scores"])
        lines.append(
            "| fold | test days | "
            + " | ".join(f"{ev.label(n, '')} acc / bal" for n in names)
            + " | p (model > majority) |"
        )
        lines.append("|---|---|" + "---:|" * (len(names) + 1))
        for f in walk["folds"]:
            t = f["splits"]["test"]
            cells = " | ".join(
                f"{f['scores'][n]['accuracy']:.3f} / {f['scores'][n]['balanced_accuracy']:.3f}" for n in names
            )
            lines.append(
                f"| {f['fold']} | {t['first']} .. {t['last']} ({t['days']}, majority {f['majority']}) | {cells} | {f['binomial_test']['p_value']:.3g} |"
            )
        p = walk["pooled"]
        cells = " | ".join(
            f"{p['scores'][n]['accuracy']:.3f} / {p['scores'][n]['balanced_accuracy']:.3f}" for n in names
        )
        lines.append(f"| pooled | {p['days']} | {cells} | {p['binomial_test']['p_value']:.3g} |")
        lines += ["", f"**Walk-forward pooled: {p['verdict']}**"]
    return "\n".join(lines) + "\n"


def preprocessor(data: TaskData):
    """Raw rows (batch, window + 1, C) -> scaled features (batch, window, F), as in training."""
    import keras

    from tasks.movement.features import PriceFeatures

    rows = keras.Input((data.spec["window"] + 1, len(data.spec["columns"])), name="rows")
    features = PriceFeatures(data.spec["columns"], name="price_features")(rows)
    return keras.Model(rows, data.scaler(features), name="movement_preprocessor")


def export_model(
    model,
    data: TaskData,
    config: ModelConfig,
    options: Options,
    metrics: dict,
    files: dict[str, bytes],
    run_dir: Path | None = None,
) -> Path:
    """SavedModel whose ``serve`` maps raw daily rows to P(up); ``features`` returns the scaled features."""
    import tensorflow as tf

    from tasks.export import export, saved_models_root

    pre = preprocessor(data)
    spec = [tf.TensorSpec((None, data.spec["window"] + 1, len(data.spec["columns"])), tf.float32, name="rows")]
    endpoints = {
        "serve": (lambda rows: tf.reshape(model(pre(rows), training=False), (-1,)), spec),
        "features": (lambda rows: pre(rows), spec),
    }
    serving = {
        "serve": f"rows float32 (batch, {data.spec['window'] + 1}, {len(data.spec['columns'])}): the last window + 1 daily rows, "
        f"oldest first, columns {data.spec['columns']} (prices split/dividend-adjusted, positive) -> P(next close > last close), shape (batch,)",
        "features": "same rows -> the scaled features the model sees, (batch, window, F)",
    }
    hyperparameters = ("window", "epochs", "batch_size", "learning_rate", "patience", "class_weight", "seed", "folds")
    card = {
        "data": data.provenance,
        "spec": data.spec,
        "serving": serving,
        "metrics": metrics,
        "hyperparameters": {k: getattr(options, k) for k in hyperparameters},
    }
    root = saved_models_root(options.saved_models)
    return export(
        model,
        task=TASK,
        config=config,
        root=root,
        endpoints=endpoints,
        track=[pre],
        card=card,
        files=files,
        run_dir=run_dir,
    )


def run(options: Options, *, verbose: int | str = "auto") -> Result:
    """Train with early stopping, score the test period (and ``folds`` walk-forward folds) against the
    baselines, write report.md, report.json and the plots into the run folder, and (unless ``export=False``)
    export. Prints nothing but progress (``verbose``) -- :func:`report` prints the summary."""
    from tasks.movement import evaluate as ev
    from tasks.movement.features import num_samples, walk_forward

    strategy = distribution_strategy(options.strategy)  # first: before any other TensorFlow op
    check_folders(options)
    set_seed(options.seed)
    start = time.perf_counter()
    data = load_data(options)
    if options.folds:  # too few days for the folds fails now, not after the main training
        walk_forward(num_samples(len(data.prices.frame), options.window), options.folds, options.val_fraction)
    config = options.model_config()
    folder = resolve_run_dir(options, TASK, config.model)
    model, history = train(config, data, options, folder, verbose=verbose, finish=False)
    test, predictions = evaluate_split(model, data, options.seed)
    walk = run_walk_forward(config, data.prices, options, verbose=verbose) if options.folds else None
    text = report_text(data, test, walk, config)

    days = data.days["test"]
    dates, close = data.prices.frame.index, data.prices.close
    title = f"{config.model} on {data.provenance['source']}, test period"
    plots = [
        ev.plot_directions(dates[days], close[days], predictions[ev.MODEL], folder / "directions.png", title),
        ev.plot_strategy(
            dates[days + 1],
            np.log(close[days + 1] / close[days]),
            {k: v for k, v in predictions.items() if k in (ev.MODEL, ev.LOGISTIC)},
            folder / "strategy.png",
            "Long/flat vs buy-and-hold, test period",
        ),
    ]
    evaluation = {"test": test, "walk_forward": walk}
    run_files.write_text(folder / "report.md", text)
    run_files.write_text(folder / "report.json", json.dumps(evaluation, indent=2) + "\n")
    exported = None
    if options.export:
        extra = {p.name: p.read_bytes() for p in plots} | {"report.md": text}
        exported = export_model(model, data, config, options, evaluation, extra, run_dir=folder)
    finish_run(folder)

    ours, skill = test["scores"][ev.MODEL], test["binomial_test"]
    metrics = {
        "accuracy": ours["accuracy"],
        "balanced_accuracy": ours["balanced_accuracy"],
        "predicted_up": ours["predicted_up"],
        "p_value": skill["p_value"],  # one-sided binomial test against the train majority's accuracy
        "skill": skill["skill"],
        "test_days": test["days"],
        "up_fraction": test["up_fraction"],
        "strategy_total_return": test["strategy_total_return"][ev.MODEL],
        # the best epoch's: early stopping restores its weights
        "val_balanced_accuracy": float(max(history.history[OBJECTIVE[0]])),
    }
    if walk is not None:
        pooled = walk["pooled"]
        metrics |= {
            "walk_forward_accuracy": pooled["scores"][ev.MODEL]["accuracy"],
            "walk_forward_balanced_accuracy": pooled["scores"][ev.MODEL]["balanced_accuracy"],
            "walk_forward_p_value": pooled["binomial_test"]["p_value"],
        }
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    baselines = {
        name: {**scores, "strategy_total_return": test["strategy_total_return"][name]}
        for name, scores in test["scores"].items()
        if name != ev.MODEL
    }
    details = {
        "data": data,
        "config": config,
        "test": test,
        "walk_forward": walk,
        "predictions": predictions,
        "report": text,
        "plots": plots,
        "epochs": len(history.epoch),
        "params": int(model.count_params()),
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
    }
    return Result(
        model=model,
        history=history,
        metrics=metrics,
        baselines=baselines,
        export=exported,
        run_dir=folder,
        options=options,
        details=details,
    )


def report(result: Result) -> None:
    """The summary ``seqzoo train movement`` prints; the full report is report.md in the run folder."""
    from tasks.terminal import print_summary

    m, test = result.metrics, result.details["test"]
    baselines = ", ".join(f"{name} {scores['balanced_accuracy']:.3f}" for name, scores in result.baselines.items())
    lines = [test["verdict"]]
    if "walk_forward_balanced_accuracy" in m:
        lines.append(
            f"walk-forward pooled balanced accuracy {m['walk_forward_balanced_accuracy']:.3f} "
            f"(p = {m['walk_forward_p_value']:.3g})"
        )
    print_summary(
        result,
        TASK,
        data=result.details["data"].provenance["source"],
        headline=f"test balanced accuracy {m['balanced_accuracy']:.3f} over {m['test_days']} days; {baselines}",
        lines=lines,
        files=[("report", result.run_dir / "report.md")],
    )


def main(argv: Sequence[str] | None = None, prog: str = "seqzoo train movement") -> int:
    return main_for(Options, run, report, argv, prog, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
