"""Daily prices for the movement task: the offline ``arch`` series, a user's CSV, or yfinance.

Every source ends in the same validated :class:`Prices`: a strictly increasing
date index and positive float columns taken from ``RAW_COLUMNS`` (``close``
always; ``open``/``high``/``low`` together; ``volume`` when present). Nothing is
dropped or reordered unless a flag asks for it, and then it is counted in
``Prices.provenance``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
        """The last ``rows`` rows (``--quick``), with the cut recorded."""
        if rows >= len(self.frame):
            return self
        frame = self.frame.iloc[-rows:]
        prov = {**self.provenance, "rows_used": rows, "quick_cut_to_last_rows": rows, "first_date": str(frame.index[0].date())}
        return Prices(frame, prov)


def load_arch(name: str) -> pd.DataFrame:
    """Daily OHLCV 1999-2018 that the ``arch`` package ships (``sp500`` or ``nasdaq``)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    import importlib

    return importlib.import_module(f"arch.data.{name}").load().reset_index()


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV as strings (so non-numeric cells can be reported, not silently parsed)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist; check --csv")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file {str(path)!r} is empty; expected a header (e.g. Date,Close) and daily rows") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"CSV file {str(path)!r} could not be parsed: {exc}") from None
    return frame


def download(ticker: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Daily OHLCV for ``ticker`` from Yahoo Finance via the optional ``yfinance`` package."""
    try:
        import yfinance as yf
    except ImportError:
        raise ValueError(
            "--ticker needs the optional yfinance package: pip install 'seqzoo[yfinance]' "
            "(or use --csv PATH / --dataset sp500|nasdaq offline)"
        ) from None
    try:
        frame = yf.download(ticker, start=start, end=end, auto_adjust=False, progress=False)
    except Exception as exc:  # network and API errors come in many types
        raise ValueError(f"Downloading {ticker!r} with yfinance failed ({exc}); are you offline? Use --csv or --dataset") from None
    if frame is None or frame.empty:
        raise ValueError(
            f"yfinance returned no rows for {ticker!r} (unknown ticker, empty date range, or offline); "
            "use --csv PATH or --dataset sp500|nasdaq"
        )
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = frame.columns.get_level_values(0)
    return frame.reset_index()


def _find(columns: list[str], name: str) -> str | None:
    by_lower = {c.strip().lower(): c for c in columns}
    return by_lower.get(name.strip().lower())


def _date_column(frame: pd.DataFrame, date_column: str | None) -> str:
    columns = list(frame.columns)
    if date_column is not None:
        found = _find(columns, date_column)
        if found is None:
            raise ValueError(f"No date column {date_column!r}; the columns are {columns}. Fix --date-column")
        return found
    for name in _DATE_NAMES:
        found = _find(columns, name)
        if found is not None:
            return found
    raise ValueError(f"No date column found among {columns}; name it Date or pass --date-column NAME")


def _price_columns(frame: pd.DataFrame, date: str, price_column: str | None) -> tuple[dict[str, str], str | None]:
    """Map our raw column names to the frame's, and the adjusted-close column if used."""
    columns = [c for c in frame.columns if c != date]
    if price_column is not None:
        found = _find(columns, price_column)
        if found is None:
            raise ValueError(f"No price column {price_column!r}; the columns are {columns}. Fix --price-column")
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
        raise ValueError(
            f"No price column: found columns {columns}. Provide Yahoo-style Open,High,Low,Close[,Adj Close,Volume] "
            "or a date column plus one price column named with --price-column NAME"
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
    their last row only with ``drop_duplicates``; each is counted.
    """
    if len(frame) == 0:
        raise ValueError(f"{source} has no data rows; expected daily rows under a header")
    frame = frame.reset_index(drop=True)
    date = _date_column(frame, date_column)
    mapping, adj = _price_columns(frame, date, price_column)
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
        checks = (("missing", frame.index[is_missing]), ("non-numeric", non_numeric), ("negative" if ours == "volume" else "zero or negative", low))
        for reason, rows in checks:
            if len(rows):
                problems[f"{reason} {theirs}"] = rows
                messages.append(f"{len(rows)} {reason} values in {theirs!r}: {_describe(rows, raw)}")
        values[ours] = number.astype(np.float64)
    bad = pd.Index(sorted(set().union(*problems.values()))) if problems else pd.Index([])
    if len(bad) and not drop_bad_rows:
        raise ValueError(
            f"{source}: " + "; ".join(messages) + f". Fix the data, or pass --drop-bad-rows to drop these {len(bad)} rows (they are counted)"
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
        raise ValueError(f"{source}: no valid rows left after dropping {len(bad)} bad rows")

    reordered = 0
    if not out.index.is_monotonic_increasing:
        position = int(np.argmax(out.index[1:] < out.index[:-1])) + 1
        if not sort_dates:
            raise ValueError(
                f"{source}: dates are not in ascending order ({out.index[position].date()} comes after "
                f"{out.index[position - 1].date()}); sort the file or pass --sort-dates (the reordering is counted)"
            )
        order = np.argsort(out.index.to_numpy(), kind="stable")
        reordered = int((order != np.arange(len(order))).sum())
        out = out.iloc[order]
    duplicated = out.index.duplicated(keep="last")
    if duplicated.any() and not drop_duplicates:
        first = out.index[duplicated][0].date()
        raise ValueError(
            f"{source}: {int(duplicated.sum())} duplicate dates (first: {first}); remove them or pass "
            "--drop-duplicates to keep the last row of each date (they are counted)"
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


def load_prices(args) -> Prices:
    """The rows that ``--csv`` / ``--ticker`` / ``--dataset`` select, validated."""
    if args.csv and args.ticker:
        raise ValueError("Pass --csv or --ticker, not both")
    if args.csv:
        raw, source = read_csv(args.csv), f"CSV {args.csv}"
    elif args.ticker:
        raw, source = download(args.ticker, args.start, args.end), f"yfinance {args.ticker}"
    else:
        raw, source = load_arch(args.dataset), f"arch.data.{args.dataset} (daily OHLCV)"
    return prepare(
        raw,
        source,
        date_column=args.date_column,
        price_column=args.price_column,
        sort_dates=args.sort_dates,
        drop_duplicates=args.drop_duplicates,
        drop_bad_rows=args.drop_bad_rows,
    )
