"""The movement task: no look-ahead, honest baselines, clear errors, and an export that serves raw rows."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tasks import movement as mv
from tasks.cli import main as seqzoo
from tasks.export import load_card, load_keras
from tasks.movement import data as md
from tasks.movement import evaluate as ev
from tasks.movement import features as mf
from tasks.options import build_parser, options_from_args
from zoo import ModelConfig
from zoo.config import MODEL_NAMES
from zoo.errors import ConfigError, FileProblem
from zoo.training import fit


def _sp500(rows=None) -> md.Prices:
    prices = md.prepare(md.load_arch("sp500"), "sp500")
    return prices if rows is None else prices.tail(rows)


def _yahoo(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2020-01-01", periods=n).strftime("%Y-%m-%d"),
            "Open": open_,
            "High": np.maximum(open_, close) * 1.004,
            "Low": np.minimum(open_, close) * 0.996,
            "Close": close,
            "Adj Close": close * 0.5,
            "Volume": rng.integers(1_000, 10_000, n),
        }
    )


def _csv(tmp_path, frame: pd.DataFrame, name="prices.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


# --- no look-ahead -----------------------------------------------------------------------------


def test_no_feature_at_day_t_changes_when_data_after_t_is_altered():
    prices = _sp500()
    frame = prices.frame.copy()
    t = 4500  # a test-period day with the default 70/15/15 split
    rng = np.random.default_rng(0)
    frame.iloc[t + 1 :] *= rng.uniform(0.5, 2.0, size=frame.iloc[t + 1 :].shape)  # a different future
    altered = md.Prices(frame, prices.provenance)
    before, after = mf.series_features(prices.frame), mf.series_features(altered.frame)
    # Feature row i is day i + 1: every day <= t is identical, the future is not.
    np.testing.assert_array_equal(before[:t], after[:t])
    assert not np.allclose(before[t:], after[t:])

    window, n = 30, mf.num_samples(len(frame), 30)
    split = mf.chronological_split(n, 0.15, 0.15, window=window)
    a, b = mv.make_data(prices, window, split), mv.make_data(altered, window, split)
    # Scaling is fitted on the training period only, so it is unchanged too.
    np.testing.assert_array_equal(a.spec["mean"], b.spec["mean"])
    np.testing.assert_array_equal(a.spec["variance"], b.spec["variance"])
    for name in mv.SPLITS:
        seen = a.days[name] <= t
        np.testing.assert_array_equal(a.x[name][seen], b.x[name][seen])
        # The label of day t is the move to t + 1, which was altered; earlier labels are not.
        np.testing.assert_array_equal(a.y[name][a.days[name] < t], b.y[name][b.days[name] < t])
    assert a.days["test"][0] < t < a.days["test"][-1]


def test_scaling_is_fitted_on_the_training_windows_only():
    prices = _sp500(400)
    window, n = 20, mf.num_samples(400, 20)
    split = mf.chronological_split(n, 0.15, 0.15, window=window)
    data = mv.make_data(prices, window, split)
    features = mf.series_features(prices.frame)
    fit_rows = features[: split.train + window - 1]  # exactly the rows inside training windows
    np.testing.assert_allclose(data.spec["mean"], fit_rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(data.spec["variance"], fit_rows.var(0), rtol=1e-4)
    # The last training window ends on the last of those rows.
    np.testing.assert_allclose(
        data.x["train"][-1], (fit_rows[-window:] - fit_rows.mean(0)) / fit_rows.std(0), atol=1e-4
    )


def test_labels_are_next_close_strictly_above_with_ties_as_not_up():
    np.testing.assert_array_equal(mf.labels(np.array([1.0, 2.0, 2.0, 1.0, 3.0])), [1, 0, 0, 1])


def test_features_match_their_definitions():
    prices = _sp500(50)
    f = mf.series_features(prices.frame)
    df = prices.frame.astype("float64")
    expected = np.stack(
        [
            np.log(df.close / df.close.shift())[1:],
            np.log(df.high / df.low)[1:],
            np.log(df.close / df.open)[1:],
            (np.log1p(df.volume) - np.log1p(df.volume.shift()))[1:],
        ],
        axis=-1,
    )
    assert mf.feature_names(prices.columns) == ["log_return", "log_range", "log_body", "volume_change"]
    np.testing.assert_allclose(f, expected, atol=2e-6)


def test_chronological_split_and_expanding_walk_forward_folds():
    split = mf.chronological_split(1000, 0.15, 0.15, window=30)
    assert (split.train, split.val, split.test) == (700, 850, 1000)
    folds = mf.walk_forward(1000, 5, 0.15)
    assert len(folds) == 5
    previous_end = None
    for fold in folds:
        assert 0 < fold.train < fold.val < fold.test <= 1000
        if previous_end is not None:
            assert fold.val == previous_end  # each fold's history grows to the previous test block's end
        previous_end = fold.test
    assert folds[-1].test == 1000 and folds[0].val == 1000 - 5 * (1000 // 6)
    with pytest.raises(ConfigError, match="folds must be at most 3 for 100 labelled days, or 0 to skip"):
        mf.walk_forward(100, 5, 0.15)


# --- options -----------------------------------------------------------------------------------


def test_explicit_values_win_over_the_quick_preset():
    quick = mv.Options.quick()
    assert (quick.small_data, quick.epochs, quick.folds) == (True, 1, 0)
    assert mv.Options.quick(folds=2).folds == 2 and mv.Options.quick(epochs=3, small_data=False).epochs == 3
    assert mv.Options.quick(folds=2).small_data  # the rest of the preset stays
    parse = build_parser(mv.Options, "seqzoo train movement").parse_args
    assert options_from_args(mv.Options, parse(["--quick", "--folds", "2", "--epochs", "3"])) == mv.Options.quick(
        folds=2, epochs=3
    )
    assert options_from_args(mv.Options, parse([])) == mv.Options()
    assert (mv.Options().model, mv.Options().units, mv.Options().folds) == ("gru", 32, 5)


BAD_OPTIONS = {
    "window": ({"window": 0}, "a positive integer"),
    "folds": ({"folds": 1}, "0 (skip walk-forward) or an integer >= 2"),
    "patience": ({"patience": 0}, "a positive integer"),
    "val_fraction": ({"val_fraction": 0.0}, "a number in (0, 1)"),
    "test_fraction": ({"val_fraction": 0.5, "test_fraction": 0.6}, "below 1 - val_fraction"),
    "ticker": ({"csv": "prices.csv", "ticker": "SPY"}, "None when csv (--csv) is set"),
    "start": ({"start": "2020-01-01"}, "None unless ticker (--ticker) is set"),
    "class_weight": ({"class_weight": "inverse"}, "one of balanced, none"),
    "dataset": ({"dataset": "dax"}, "one of sp500, nasdaq"),
}


@pytest.mark.parametrize("field", list(BAD_OPTIONS))
def test_bad_options_name_the_field_and_the_cli_shows_its_flag(field, capsys):
    fields, expected = BAD_OPTIONS[field]
    with pytest.raises(ConfigError) as info:
        mv.Options(**fields)
    assert info.value.field == field and str(info.value).startswith(f"{field} must be {expected}")
    if field in ("dataset", "class_weight"):
        return  # flags with choices: argparse refuses the value before Options sees it
    argv = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in fields.items()]
    assert seqzoo(["train", "movement", *argv, "--no-export"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--{field.replace('_', '-')} must be" in err[0], err
    assert "(--" not in err[0], "the command line names each setting by its flag alone"


def test_data_errors_name_the_settings_that_fix_them(tmp_path):
    frame = _yahoo(60)
    frame["Close"] = frame["Close"].astype(object)
    frame.loc[10, "Close"] = "null"
    with pytest.raises(FileProblem, match="set drop_bad_rows=True to drop these 1 rows"):
        mv.load_data(mv.Options(csv=_csv(tmp_path, frame), window=5))
    unsorted = _csv(tmp_path, _yahoo(60).iloc[[1, 0, *range(2, 60)]], "unsorted.csv")
    with pytest.raises(FileProblem, match="set sort_dates=True"):
        mv.load_data(mv.Options(csv=unsorted, window=5))
    with pytest.raises(ConfigError, match=r"date_column must be a column of CSV .*got 'Day'"):
        mv.load_data(mv.Options(csv=_csv(tmp_path, _yahoo(60), "ok.csv"), date_column="Day"))
    with pytest.raises(ConfigError, match="dataset must be one of sp500, nasdaq"):
        md.load_arch("dax")


# --- loading and bad input --------------------------------------------------------------------


def test_yahoo_csv_is_adjusted_by_adj_close_and_counted(tmp_path):
    frame = _yahoo()
    prices = md.load_prices(mv.Options(csv=_csv(tmp_path, frame)))
    assert prices.columns == md.RAW_COLUMNS
    np.testing.assert_allclose(prices.frame.close, frame["Adj Close"])
    np.testing.assert_allclose(prices.frame.open, frame.Open * 0.5)
    p = prices.provenance
    assert (
        p["rows_read"],
        p["rows_used"],
        p["dropped_bad_rows"],
        p["dropped_duplicate_dates"],
        p["reordered_rows"],
    ) == (80, 80, 0, 0, 0)
    assert p["adjusted_by"] == "Adj Close" and p["gaps_over_4_days"] == 0


def test_price_only_csv_gives_return_features(tmp_path):
    frame = _yahoo()[["Date", "Close"]].rename(columns={"Close": "Price"})
    prices = md.load_prices(mv.Options(csv=_csv(tmp_path, frame), price_column="price"))
    assert prices.columns == ("close",)
    assert mf.series_features(prices.frame).shape == (79, 1)


def test_flags_drop_sort_and_count_instead_of_failing(tmp_path):
    frame = _yahoo(60)
    frame["Close"] = frame["Close"].astype(object)
    frame.loc[10, "Close"] = "null"  # a bad row
    frame = pd.concat([frame, frame.iloc[[20]]])  # a duplicate date
    frame = frame.iloc[::-1]  # newest first
    path = _csv(tmp_path, frame)
    prices = md.load_prices(mv.Options(csv=path, sort_dates=True, drop_duplicates=True, drop_bad_rows=True))
    p = prices.provenance
    assert (p["rows_read"], p["rows_used"], p["dropped_bad_rows"], p["dropped_duplicate_dates"]) == (61, 59, 1, 1)
    assert p["bad_rows_by_reason"] == {"missing Close": 1} and p["reordered_rows"] > 0
    assert prices.frame.index.is_monotonic_increasing and prices.frame.index.is_unique

    gap = _yahoo(40)
    gap.loc[20:, "Date"] = pd.bdate_range("2020-03-01", periods=20).strftime("%Y-%m-%d")
    p = md.load_prices(mv.Options(csv=_csv(tmp_path, gap, "gap.csv"))).provenance
    assert p["gaps_over_4_days"] == 1 and p["largest_gap_days"] == 34  # 2020-01-28 -> 2020-03-02


def _bad(frame_edit):
    frame = _yahoo(60)
    return frame_edit(frame) if frame_edit else frame


BAD_INPUTS = {
    "empty file": (None, "is empty"),
    "header only": (lambda f: f.iloc[:0], "no data rows"),
    "no price column": (lambda f: f[["Date"]].assign(Foo=1.0, Bar=2.0), "No price column"),
    "non-numeric": (
        lambda f: f.assign(Close=f.Close.astype(object).where(f.index != 5, "abc")),
        "non-numeric values in 'Close'",
    ),
    "zero price": (lambda f: f.assign(Low=f.Low.where(f.index != 7, 0.0)), "zero or negative values in 'Low'"),
    "negative price": (lambda f: f.assign(Open=f.Open.where(f.index != 7, -1.0)), "zero or negative values in 'Open'"),
    "NaN": (lambda f: f.assign(High=f.High.where(f.index != 3, np.nan)), "missing values in 'High'"),
    "negative volume": (lambda f: f.assign(Volume=f.Volume.where(f.index != 3, -5)), "negative values in 'Volume'"),
    "bad date": (lambda f: f.assign(Date=f.Date.where(f.index != 4, "yesterday")), "unparseable dates"),
    "unsorted dates": (lambda f: f.iloc[[1, 0, *range(2, 60)]], "not in ascending order"),
    "duplicate dates": (lambda f: pd.concat([f, f.iloc[[9]]]).sort_values("Date", kind="stable"), "1 duplicate dates"),
    "too few rows": (lambda f: f.iloc[:50], "Too few rows"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(tmp_path, case):
    edit, message = BAD_INPUTS[case]
    path = tmp_path / "bad.csv"
    if edit is None:
        path.write_text("")
    else:
        edit(_yahoo(60)).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message) as info:
        mv.load_data(mv.Options(csv=str(path), window=10))
    # It names the file, the problem and the fix, in the library's words (fields, not flags).
    assert isinstance(info.value, FileProblem) and info.value.path == str(path) and info.value.fix
    assert "--" not in info.value.fix


def test_binary_csv_names_the_file_and_utf8(tmp_path, capsys):
    path = tmp_path / "prices.xlsx.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\xff\xfe binary spreadsheet")
    with pytest.raises(FileProblem, match="it is not UTF-8 text") as info:
        md.read_csv(path)
    assert info.value.path == str(path) and "CSV" in info.value.fix
    assert mv.main(["--csv", str(path), "--no-export", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "UTF-8" in err and len(err.splitlines()) == 1, err


def test_missing_file_and_wrong_column_names(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mv.load_data(mv.Options(csv=str(tmp_path / "nope.csv")))
    path = _csv(tmp_path, _yahoo())
    with pytest.raises(ConfigError, match=r"price_column must be a column of CSV .*got 'Last'"):
        mv.load_data(mv.Options(csv=path, price_column="Last"))
    with pytest.raises(ConfigError, match="window must be at most 15 for 80 daily rows, got 70. Too few rows"):
        mv.load_data(mv.Options(csv=path, window=70))
    assert mv.main(["--csv", path, "--window", "70", "--no-export"]) == 2  # the CLI: one line, exit code 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Too few rows" in err[0] and "--window must be at most 15" in err[0]


def test_ticker_without_yfinance_says_how_to_get_it():
    if importlib.util.find_spec("yfinance") is not None:
        pytest.skip("yfinance is installed")
    with pytest.raises(ValueError, match=r"pip install 'seqzoo\[yfinance\]'"):
        md.load_prices(mv.Options(ticker="SPY"))


# --- evaluation --------------------------------------------------------------------------------


def test_balanced_accuracy_metric_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 500), rng.uniform(size=500)
    metric = ev.BalancedAccuracy()
    metric.update_state(y[:300, None], p[:300, None])
    metric.update_state(y[300:, None], p[300:, None])
    assert float(metric.result()) == pytest.approx(balanced_accuracy_score(y, p > 0.5), abs=1e-6)
    metric.reset_state()
    metric.update_state(y, np.ones(500), sample_weight=np.where(y == 1, 0.3, 3.0))  # always up, any class weights
    assert float(metric.result()) == pytest.approx(0.5)


def test_the_report_says_plainly_when_there_is_no_skill():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=400) < 0.55).astype(int)
    name = ev.MAJORITY
    coin = ev.evaluate(y, {ev.MODEL: rng.integers(0, 2, 400), name: np.ones(400, int)}, "up")
    assert coin["verdict"].startswith("NO SKILL") and not coin["binomial_test"]["skill"]
    assert coin["binomial_test"]["baseline_rate"] == pytest.approx(y.mean())
    assert "always-up (train majority) 0.5" in coin["verdict"]
    good = ev.evaluate(y, {ev.MODEL: np.where(rng.uniform(size=400) < 0.8, y, 1 - y), name: np.ones(400, int)}, "up")
    assert good["verdict"].startswith("SKILL") and good["binomial_test"]["p_value"] < 1e-6
    assert good["scores"][name]["balanced_accuracy"] == 0.5


def test_baselines_are_scored_on_the_same_test_days():
    prices = _sp500(300)
    split = mf.chronological_split(mf.num_samples(300, 10), 0.15, 0.15, window=10)
    data = mv.make_data(prices, 10, split)
    close, days = prices.close, data.days["test"]
    preds = ev.baseline_predictions(
        data.x["train"], data.y["train"], data.x["test"], close[days] > close[days - 1], class_weight=None
    )
    assert set(preds) == {ev.MAJORITY, ev.PERSISTENCE, ev.LOGISTIC}
    assert all(len(p) == len(days) for p in preds.values())
    np.testing.assert_array_equal(data.y["test"], close[days + 1] > close[days])
    # Persistence predicts today's direction, i.e. yesterday's label.
    np.testing.assert_array_equal(preds[ev.PERSISTENCE][1:], data.y["test"][:-1])


# --- training and export -----------------------------------------------------------------------


@pytest.mark.slow  # every model again (11 s); classify's every-model test stays in the default suite
def test_every_zoo_model_trains_at_the_fixed_window_and_logs_the_objective():
    prices = _sp500(150)
    window = 8
    split = mf.chronological_split(mf.num_samples(150, window), 0.15, 0.15, window=window)
    data = mv.make_data(prices, window, split, batch_size=32)
    for name in MODEL_NAMES:
        config = ModelConfig(name, units=4, num_layers=2 if name == "stacked_lstm" else 1)
        model = mv.compile(mv.build_model(config, data), data)
        history = fit(model, data.train.take(1), data.val if name == "gru" else None, verbose=0).history
        assert np.isfinite(history["loss"][0]), name
        assert 0 <= history["balanced_accuracy"][0] <= 1, name
        assert model.output_shape == (None, 1)
        if name == "gru":  # what the tuner optimizes is in the logs of the shared fit
            assert mv.OBJECTIVE == ("val_balanced_accuracy", "max") and 0 <= history[mv.OBJECTIVE[0]][0] <= 1


SERVE_ELSEWHERE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    path, rows_file, out_file = sys.argv[1:]
    served = tf.saved_model.load(path)
    rows = np.load(rows_file)
    whole = served.serve(tf.constant(rows)).numpy()
    single = np.concatenate([served.serve(tf.constant(rows[i : i + 1])).numpy() for i in range(3)])
    features = served.features(tf.constant(rows)).numpy()
    default = served.signatures["serving_default"](rows=tf.constant(rows))
    np.savez(out_file, whole=whole, single=single, features=features, default=list(default.values())[0].numpy())
    assert not any(m == "zoo" or m.startswith(("zoo.", "tasks")) for m in sys.modules), "seqzoo was imported"
    """
)


def test_quick_run_reports_and_exports_a_model_that_serves_raw_rows_without_seqzoo(tmp_path, capsys):
    argv = [
        "--quick",
        "--window",
        "12",
        "--units",
        "8",
        "--runs",
        str(tmp_path / "runs"),
        "--saved-models",
        str(tmp_path / "sm"),
    ]
    assert mv.main(argv) == 0
    out = capsys.readouterr().out
    assert "always-up (train majority)" in out and "logistic regression" in out and "SKILL" in out
    path = tmp_path / "sm" / "movement" / "gru" / "1"
    card = load_card(path)
    assert card["spec"]["window"] == 12 and card["spec"]["columns"] == list(md.RAW_COLUMNS)
    assert card["data"]["quick_cut_to_last_rows"] == mv.QUICK_SAMPLES + 13
    test = card["metrics"]["test"]
    assert set(test["scores"]) == {"model", "train majority", "persistence", "logistic regression"}
    assert 0 <= test["binomial_test"]["p_value"] <= 1 and test["verdict"]
    for name in ("directions.png", "strategy.png", "report.md"):
        assert (path / name).stat().st_size > 1000, name
    assert (path / "report.md").read_text().count("| model |") == 1

    # The same data again, in process: the training pipeline's features and the Keras model's P(up).
    data = mv.load_data(
        mv.Options.quick(window=12, units=8, runs=str(tmp_path / "runs"), saved_models=str(tmp_path / "sm"))
    )
    rows = data.raw_windows("test")
    assert rows.shape == (len(data.y["test"]), 13, 5)
    np.save(tmp_path / "rows.npy", rows)
    expected = load_keras(path).predict(data.x["test"], verbose=0).ravel()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = [sys.executable, "-c", SERVE_ELSEWHERE, str(path), str(tmp_path / "rows.npy"), str(tmp_path / "out.npz")]
    subprocess.run(code, check=True, cwd=tmp_path, env=env, timeout=300)
    served = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(served["features"], data.x["test"], atol=1e-5)  # in-export features == pipeline's
    np.testing.assert_allclose(served["whole"], expected, atol=1e-5)
    np.testing.assert_allclose(served["single"], expected[:3], atol=1e-5)
    np.testing.assert_allclose(served["default"], expected, atol=1e-5)


def test_run_returns_a_result_with_baselines_and_walk_forward_folds(tmp_path, capsys):
    """The library path: Options -> run -> Result, and report prints the summary. Walk-forward runs here
    because folds=2 wins over the quick preset's 0."""
    options = mv.Options.quick(folds=2, window=10, units=4, export=False, runs=str(tmp_path / "runs"))
    result = mv.run(options, verbose=0)
    assert result.export is None and result.options is options
    assert 0 <= result.metrics["accuracy"] <= 1 and 0 <= result.metrics["walk_forward_balanced_accuracy"] <= 1
    assert result.metrics["test_days"] == len(result.details["data"].y["test"])
    assert set(result.baselines) == {ev.MAJORITY, ev.PERSISTENCE, ev.LOGISTIC}
    assert result.baselines[ev.MAJORITY]["balanced_accuracy"] == 0.5
    assert len(result.details["walk_forward"]["folds"]) == 2 and result.history.epoch == [0]
    for name in ("report.md", "report.json", "directions.png", "strategy.png"):
        assert (result.run_dir / name).exists(), name
    mv.report(result)
    out = capsys.readouterr().out
    assert "walk-forward pooled balanced accuracy" in out and f"run folder: {result.run_dir}" in out
    assert "export:" not in out


def test_help_lists_every_task_flag(capsys):
    with pytest.raises(SystemExit) as info:
        mv.main(["--help"], prog="seqzoo train movement")
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--dataset",
        "--csv",
        "--price-column",
        "--ticker",
        "--window",
        "--folds",
        "--quick",
        "--drop-bad-rows",
    ):
        assert flag in text


@pytest.mark.slow
def test_default_run_on_sp500_walk_forward(tmp_path):
    argv = ["--runs", str(tmp_path / "runs"), "--saved-models", str(tmp_path / "sm")]
    assert mv.main(argv) == 0
    metrics = json.loads((next((tmp_path / "runs").rglob("report.json"))).read_text())
    walk = metrics["walk_forward"]
    assert len(walk["folds"]) == 5 and walk["pooled"]["days"] > 3500
    for result in (metrics["test"], walk["pooled"]):
        for scores in result["scores"].values():
            assert 0.35 < scores["accuracy"] < 0.65  # daily direction is close to a coin flip
        assert result["verdict"].startswith(("SKILL", "NO SKILL"))
