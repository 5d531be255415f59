"""Daily prices for the movement task: the offline ``arch`` series, a user's CSV, or yfinance.

Every source ends in the same validated :class:`Prices`: a strictly increasing
date index and positive float columns taken from ``RAW_COLUMNS`` (``close``
always; ``open``/``high``/``low`` together; ``volume`` when present). Nothing is
dropped or reordered unless a setting (``drop_bad_rows``, ``drop_duplicates``,
``sort_dates``) asks for it, and then it is counted in ``Prices.provenance``.
A problem in a CSV file is a :class:`zoo.errors.FileProblem` that names the file
and the fix; a setting that does not fit the data is a :class:`zoo.errors.ConfigError`
that names the setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zoo.errors import ConfigError, FileProblem

RAW_COLUMNS = ("open", "high", "low", "close", "volume")
OHLC = ("open", "high", "low", "close")
DATASETS = ("sp500", "nasdaq")
# Weekends plus a one-day holiday give 4 calendar days between trading days; longer is a gap.
MAX_CALENDAR_STEP = 4
_DATE_NAMES = ("date", "datetime", "timestamp", "time", "day")
_MISSING = ("", "nan", "NaN", "NA", "N/A", "null", "None")


@dataclass
class Prices:
    """Validated daily rows. ``frame``: DatetimeIndex, float columns in ``RAW_COLUMNS`` order."""

    frame: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.frame.columns)

    @property
    def close(self) -> np.ndarray:
        return self.frame["close"].to_numpy(np.float64)

    def tail(self, rows: int) -> Prices:
        """The last ``rows`` rows (``small_data``), with the cut recorded."""
        if rows >= len(self.frame):
            return self
        frame = self.frame.iloc[-rows:]
        prov = {
            **self.provenance,
            "rows_used": rows,
            "quick_cut_to_last_rows": rows,
            "first_date": str(frame.index[0].date()),
        }
        return Prices(frame, prov)


def load_arch(name: str) -> pd.DataFrame:
    """Daily OHLCV 1999-2018 that the ``arch`` package ships (``sp500`` or ``nasdaq``)."""
    if name not in DATASETS:
        raise ConfigError("dataset", name, "one of " + ", ".join(DATASETS))
    import importlib

    return importlib.import_module(f"arch.data.{name}").load().reset_index()


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV as strings (so non-numeric cells can be reported, not silently parsed)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist; check the path given as csv")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise FileProblem(
            path, "the file is empty", "Write a header (e.g. Date,Close) and daily rows into it"
        ) from None
    except pd.errors.ParserError as exc:
        raise FileProblem(
            path, f"it could not be parsed as CSV ({exc})", "Check that it is comma-separated text with one header row"
        ) from None
    except UnicodeDecodeError as exc:
        raise FileProblem(
            path,
            f"it is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "Pass a UTF-8 text CSV file (e.g. Date,Close and daily rows), not a spreadsheet or binary file",
        ) from None
    return frame


def download(ticker: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Daily OHLCV for ``ticker`` from Yahoo Finance via the optional ``yfinance`` package."""
    offline = "read prices offline from a file with csv (--csv), or from dataset (--dataset) 'sp500' or 'nasdaq'"
    try:
        import yfinance as yf
    except ImportError:
        raise ConfigError(
            "ticker",
            ticker,
            "set only where the optional yfinance package is installed",
            f"Install it with pip install 'seqzoo[yfinance]', or {offline}",
        ) from None
    try:
        frame = yf.download(ticker, start=start, end=end, auto_adjust=False, progress=False)
    except Exception as exc:  # network and API errors come in many types
        raise ConfigError(
            "ticker",
            ticker,
            "a symbol yfinance can download",
            f"The download failed ({exc}); are you offline? Or {offline}",
        ) from None
    if frame is None or frame.empty:
        raise ConfigError(
            "ticker",
            ticker,
            "a symbol with daily rows between start and end",
            f"yfinance returned no rows (unknown ticker, empty date range, or offline); {offline}",
        )
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = frame.columns.get_level_values(0)
    return frame.reset_index()


def _find(columns: list[str], name: str) -> str | None:
    by_lower = {c.strip().lower(): c for c in columns}
    return by_lower.get(name.strip().lower())


def _problem(source: str, path: str | os.PathLike | None, problem: str, fix: str) -> ValueError:
    """A problem in the rows: a :class:`FileProblem` naming the file when they came from one."""
    if path is not None:
        return FileProblem(path, problem, fix)
    return ValueError(f"{source}: {problem}. {fix}")


def _date_column(frame: pd.DataFrame, date_column: str | None, source: str, path) -> str:
    columns = list(frame.columns)
    if date_column is not None:
        found = _find(columns, date_column)
        if found is None:
            raise ConfigError("date_column", date_column, f"a column of {source}", f"Its columns are {columns}")
        return found
    for name in _DATE_NAMES:
        found = _find(columns, name)
        if found is not None:
            return found
    raise _problem(
        source, path, f"no date column found among {columns}", "Name it Date, or set date_column to its name"
    )


def _price_columns(
    frame: pd.DataFrame, date: str, price_column: str | None, source: str, path
) -> tuple[dict[str, str], str | None]:
    """Map our raw column names to the frame's, and the adjusted-close column if used."""
    columns = [c for c in frame.columns if c != date]
    if price_column is not None:
        found = _find(columns, price_column)
        if found is None:
            raise ConfigError(
                "price_column", price_column, f"a column of {source}", f"Its columns besides the date are {columns}"
            )
        return {"close": found}, None
    found = {name: _find(columns, name) for name in RAW_COLUMNS}
    adj = _find(columns, "adj close") or _find(columns, "adj_close") or _find(columns, "adjclose")
    if all(found[c] for c in OHLC):
        mapping = {c: found[c] for c in OHLC}
    elif found["close"] or adj:
        mapping = {"close": found["close"] or adj}
        adj = None if found["close"] is None else adj
    elif len(columns) == 1:
        return {"close": columns[0]}, None
    else:
        raise _problem(
            source,
            path,
            f"No price column: found columns {columns}",
            "Provide Yahoo-style Open,High,Low,Close[,Adj Close,Volume], or a date column plus one price column "
            "named by price_column",
        )
    if found["volume"]:
        mapping["volume"] = found["volume"]
    return mapping, adj


def _describe(rows: pd.Index, values: pd.Series | None = None, limit: int = 3) -> str:
    shown = [f"line {i + 2}" + ("" if values is None else f" ({values.loc[i]!r})") for i in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def prepare(
    frame: pd.DataFrame,
    source: str,
    *,
    path: str | os.PathLike | None = None,
    date_column: str | None = None,
    price_column: str | None = None,
    sort_dates: bool = False,
    drop_duplicates: bool = False,
    drop_bad_rows: bool = False,
) -> Prices:
    """Validate raw rows into :class:`Prices`; every problem is an error naming its fix.

    Bad rows (unparseable date, missing/non-numeric/non-positive price, missing/
    non-numeric/negative volume) are dropped only with ``drop_bad_rows``,
    unsorted dates are sorted only with ``sort_dates``, and duplicate dates keep
    their last row only with ``drop_duplicates``; each is counted. ``path``: the
    file the rows were read from, so that a problem in them is a
    :class:`FileProblem` naming it (rows from elsewhere give a ``ValueError``
    naming ``source``).
    """
    if len(frame) == 0:
        raise _problem(source, path, "no data rows", "Add daily rows under the header (e.g. Date,Close)")
    frame = frame.reset_index(drop=True)
    date = _date_column(frame, date_column, source, path)
    mapping, adj = _price_columns(frame, date, price_column, source, path)
    used = {**mapping, **({"adj_close": adj} if adj else {})}

    dates = pd.to_datetime(frame[date], errors="coerce")
    problems: dict[str, pd.Index] = {}
    messages: list[str] = []
    bad_date = frame.index[dates.isna()]
    if len(bad_date):
        problems["unparseable date"] = bad_date
        messages.append(f"{len(bad_date)} unparseable dates in {date!r}: {_describe(bad_date, frame[date])}")
    values = {}
    for ours, theirs in used.items():
        raw = frame[theirs]
        if not pd.api.types.is_numeric_dtype(raw):
            text = raw.astype(str).str.strip()
            is_missing = text.isin(_MISSING)
            number = pd.to_numeric(text.mask(is_missing), errors="coerce")
        else:
            is_missing, number = raw.isna(), pd.to_numeric(raw, errors="coerce")
        non_numeric = frame.index[(number.isna() & ~is_missing) | np.isinf(number)]
        low = frame.index[number < 0] if ours == "volume" else frame.index[number <= 0]
        checks = (
            ("missing", frame.index[is_missing]),
            ("non-numeric", non_numeric),
            ("negative" if ours == "volume" else "zero or negative", low),
        )
        for reason, rows in checks:
            if len(rows):
                problems[f"{reason} {theirs}"] = rows
                messages.append(f"{len(rows)} {reason} values in {theirs!r}: {_describe(rows, raw)}")
        values[ours] = number.astype(np.float64)
    bad = pd.Index(sorted(set().union(*problems.values()))) if problems else pd.Index([])
    if len(bad) and not drop_bad_rows:
        raise _problem(
            source,
            path,
            "; ".join(messages),
            f"Fix the data, or set drop_bad_rows=True to drop these {len(bad)} rows (they are counted)",
        )

    out = pd.DataFrame(values)
    if adj:  # split/dividend-adjust the whole bar by the same factor as the close
        factor = out.pop("adj_close") / out["close"]
        for c in OHLC:
            if c in out:
                out[c] = out[c] * factor
    out.index = pd.DatetimeIndex(dates, name="date")
    out = out.loc[~frame.index.isin(bad)]
    out = out[[c for c in RAW_COLUMNS if c in out]]
    if out.empty:
        raise _problem(source, path, f"no valid rows left after dropping {len(bad)} bad rows", "Fix the data")

    reordered = 0
    if not out.index.is_monotonic_increasing:
        position = int(np.argmax(out.index[1:] < out.index[:-1])) + 1
        if not sort_dates:
            raise _problem(
                source,
                path,
                f"dates are not in ascending order ({out.index[position].date()} comes after "
                f"{out.index[position - 1].date()})",
                "Sort the file, or set sort_dates=True (the reordering is counted)",
            )
        order = np.argsort(out.index.to_numpy(), kind="stable")
        reordered = int((order != np.arange(len(order))).sum())
        out = out.iloc[order]
    duplicated = out.index.duplicated(keep="last")
    if duplicated.any() and not drop_duplicates:
        first = out.index[duplicated][0].date()
        raise _problem(
            source,
            path,
            f"{int(duplicated.sum())} duplicate dates (first: {first})",
            "Remove them, or set drop_duplicates=True to keep the last row of each date (they are counted)",
        )
    out = out[~duplicated]

    steps = np.diff(out.index.to_numpy()).astype("timedelta64[D]").astype(int)
    gaps = steps > MAX_CALENDAR_STEP
    largest = int(steps.max()) if len(steps) else 0
    provenance = {
        "source": source,
        "columns": list(out.columns),
        "source_columns": used,
        "adjusted_by": adj,
        "rows_read": int(len(frame)),
        "rows_used": int(len(out)),
        "dropped_bad_rows": int(len(bad)),
        "bad_rows_by_reason": {k: int(len(v)) for k, v in problems.items()},
        "dropped_duplicate_dates": int(duplicated.sum()),
        "reordered_rows": reordered,
        f"gaps_over_{MAX_CALENDAR_STEP}_days": int(gaps.sum()),
        "largest_gap_days": largest,
        "first_date": str(out.index[0].date()),
        "last_date": str(out.index[-1].date()),
    }
    return Prices(out, provenance)


def load_prices(options) -> Prices:
    """The rows that ``options.csv`` / ``options.ticker`` / ``options.dataset`` select, validated.

    ``options``: a :class:`tasks.movement.Options` (which refuses ``csv`` and ``ticker`` together), or
    anything with its data fields.
    """
    path = None
    if options.csv:
        raw, source, path = read_csv(options.csv), f"CSV {options.csv}", options.csv
    elif options.ticker:
        raw, source = download(options.ticker, options.start, options.end), f"yfinance {options.ticker}"
    else:
        raw, source = load_arch(options.dataset), f"arch.data.{options.dataset} (daily OHLCV)"
    return prepare(
        raw,
        source,
        path=path,
        date_column=options.date_column,
        price_column=options.price_column,
        sort_dates=options.sort_dates,
        drop_duplicates=options.drop_duplicates,
        drop_bad_rows=options.drop_bad_rows,
    )
