"""Build the parquet files of the Loopstack feature repository from the ISLP CSVs.

Usage (from the project root)::

    pip download --no-deps ISLP==0.6.0 -d /tmp/islp
    unzip -o /tmp/islp/islp-0.6.0-py3-none-any.whl 'ISLP/data/*' -d /tmp/islp
    uv run python feature_repo/data/prepare.py /tmp/islp/ISLP/data
    # or, without the wheel, from the replay file already in the repository:
    uv run python feature_repo/data/prepare.py --from-replay

The script is deterministic (fixed seed, no wall clock): running it again on the same CSVs
writes the same rows. See `README.md` next to it for sources, licences and event-time
conventions; the short version:

* bike demand: an hour H is the interval [H, H+1h). A label row is timestamped H, the moment
  its prediction is made; its count `bikers` is known at H+1h (`label_timestamp`). Lag rows are
  timestamped T when every ingredient is known, so a point-in-time join at H never sees the
  count of hour H or later.
* bike demand, history and replay: the files Feast trains from (labels, lags) end with
  February 2011 (`HISTORY_END`), the first model's window; the whole year, labels joined with
  the lags known at each hour, is `bike_demand_replay.parquet`, read only by the demo's replay
  (its requests, outcomes and the app's own lag feed) and by its hindsight baselines. Later
  models learn March onwards only from the outcomes the replay sends back as feedback.
* credit default: each customer gets one seeded event time, uniform over 2011; the feature
  snapshot and the prediction share it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["bike_lags", "prepare_bikeshare", "prepare_default", "split_bikeshare", "main"]

YEAR_START = pd.Timestamp("2011-01-01", tz="UTC")
HISTORY_END = pd.Timestamp("2011-03-01", tz="UTC")
"""The training files hold event times before this; later hours exist only in the replay file."""
BIKE_REPLAY = "bike_demand_replay.parquet"
CITY_ID = "dc"
HOUR = pd.Timedelta(hours=1)
TRAILING_HOURS = 7 * 24
TRAILING_MIN_HOURS = 24  # a trailing mean from under a day of hours is mostly time-of-day noise
CREDIT_SEED = 20110101
MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"],
        start=1,
    )
}
CONTEXT = [
    "season",
    "mnth",
    "day",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
]
LABEL_COLUMNS = ["city_id", "event_timestamp", *CONTEXT, "label_timestamp", "bikers"]
PARQUET = {"index": False, "compression": "zstd"}


def prepare_bikeshare(csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (labels, lags) for the bike-demand model from `Bikeshare.csv`."""
    raw = pd.read_csv(csv)
    # `day` is the day of the year (1..365) and `hr` the hour of the day; the source clock is
    # Washington local time, taken as UTC here so every hour exists once (no DST gap/repeat).
    hour = (
        YEAR_START
        + pd.to_timedelta(raw["day"] - 1, unit="D")
        + pd.to_timedelta(raw["hr"], unit="h")
    )
    labels = pd.DataFrame({"city_id": CITY_ID, "event_timestamp": hour})
    for col in CONTEXT:
        labels[col] = raw[col]
    labels["mnth"] = raw["mnth"].map(MONTHS).astype("int64")
    labels["hr"] = raw["hr"].astype("int64")
    labels["label_timestamp"] = hour + HOUR
    # casual + registered == bikers: both are the label in disguise, so they are left out.
    labels["bikers"] = raw["bikers"].astype("int64")
    if not labels["event_timestamp"].is_unique:
        raise ValueError("Bikeshare.csv has two rows for the same hour")
    return labels, bike_lags(labels)


def bike_lags(labels: pd.DataFrame) -> pd.DataFrame:
    """The hourly lag rows of 2011 (and 2012-01-01 00:00) from the year's label rows."""
    # Lags are computed on the complete hourly grid, so a missing hour is a missing value
    # (lag by time, not by row), never the neighbouring row's count.
    grid = pd.date_range(
        YEAR_START, YEAR_START + pd.Timedelta(days=365), freq="h", inclusive="left"
    )
    counts = labels.set_index("event_timestamp")["bikers"].astype("float64").reindex(grid)
    trailing = counts.rolling(TRAILING_HOURS, min_periods=TRAILING_MIN_HOURS).mean()
    # Row T carries what is known at T: counts of hours that ended by T (hour starts <= T-1h).
    available = grid.append(pd.DatetimeIndex([grid[-1] + HOUR]))
    lags = pd.DataFrame({"city_id": CITY_ID, "event_timestamp": available})
    lags["bikers_last_hour"] = _at(counts, available - HOUR).astype("Int64")
    lags["bikers_same_hour_yesterday"] = _at(counts, available - pd.Timedelta(hours=24)).astype(
        "Int64"
    )
    lags["bikers_mean_7d"] = _at(trailing, available - HOUR).round(4)
    return lags


def split_bikeshare(labels: pd.DataFrame, lags: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The year's bike files: training history up to HISTORY_END, and the whole-year replay.

    The replay joins each label row with the lag row of its own hour, the one a point-in-time
    join picks (the lag grid is complete, so it is always there): the app's requests, outcomes
    and lag feed, and the features the hindsight baselines are fitted on.
    """
    replay = labels.merge(lags, on=["city_id", "event_timestamp"], how="left", validate="1:1")
    return {
        "bike_demand_labels.parquet": _before(labels, HISTORY_END),
        "bike_demand_lags.parquet": _before(lags, HISTORY_END),
        BIKE_REPLAY: replay,
    }


def _before(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    return frame[frame["event_timestamp"] < end].reset_index(drop=True)


def _at(series: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    """Values of `series` at `index` (NaN where the index falls outside it), positionally."""
    return series.reindex(index).reset_index(drop=True)


def prepare_default(csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (labels, customers) for the credit-default model from `Default.csv`."""
    raw = pd.read_csv(csv)
    rng = np.random.default_rng(CREDIT_SEED)
    seconds = rng.integers(0, 365 * 24 * 3600, size=len(raw))
    when = YEAR_START + pd.to_timedelta(seconds, unit="s")
    ids = np.arange(len(raw), dtype="int64")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": when,
            "student": raw["student"].astype(str),
            "balance": raw["balance"].round(2),
            "income": raw["income"].round(2),
        }
    )
    labels = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": when,
            "default": (raw["default"] == "Yes").astype("int64"),
        }
    )
    order = np.argsort(when.to_numpy(), kind="stable")
    return labels.iloc[order].reset_index(drop=True), customers.iloc[order].reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """Read the CSVs from the folder given and write the parquet files next to this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "csv_dir", type=Path, nargs="?", help="folder holding Bikeshare.csv and Default.csv"
    )
    parser.add_argument(
        "--from-replay",
        action="store_true",
        help=f"rebuild only the bike files from {BIKE_REPLAY} (no CSVs needed)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    outputs: dict[str, pd.DataFrame] = {}
    if args.from_replay:
        # The replay's label columns are the year's labels; the lags are a function of them.
        labels = pd.read_parquet(args.out / BIKE_REPLAY, columns=LABEL_COLUMNS)
        outputs.update(split_bikeshare(labels, bike_lags(labels)))
    elif args.csv_dir is None:
        parser.error("give the folder of the CSVs, or --from-replay")
    else:
        outputs.update(split_bikeshare(*prepare_bikeshare(args.csv_dir / "Bikeshare.csv")))
        credit_labels, customers = prepare_default(args.csv_dir / "Default.csv")
        outputs["credit_default_labels.parquet"] = credit_labels
        outputs["credit_customers.parquet"] = customers
    for name, frame in outputs.items():
        frame.to_parquet(args.out / name, **PARQUET)
        print(f"{name}: {len(frame)} rows, {(args.out / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
