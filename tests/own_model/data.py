"""A user's project on a real public data set, laid out at test time from the template here.

The data: `seattle-weather.csv` of the `vega-datasets` package (a test dependency, MIT; the
data are NOAA public-domain daily observations in Seattle, 2012-2015), read offline from the
installed package. Only the first training's label window is written as a file; later labels
must reach training as feedback.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd

__all__ = ["CITY", "MODEL", "TEMPLATE", "daily_rows", "lay_out_project"]

TEMPLATE = Path(__file__).resolve().parent / "project"
MODEL = "seattle-weather"
CITY = "seattle"
_LATITUDE = 47.61


def daily_rows() -> pd.DataFrame:
    """Every day of the data set as a label row: key, prediction time, request fields, target."""
    from vega_datasets import local_data

    raw = local_data.seattle_weather()
    return pd.DataFrame(
        {
            "city_id": CITY,
            "event_timestamp": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
            "month": raw["date"].dt.month.astype("int64"),
            "precipitation": raw["precipitation"].astype("float64"),
            "temp_min": raw["temp_min"].astype("float64"),
            "wind": raw["wind"].astype("float64"),
            "temp_max": raw["temp_max"].astype("float64"),
        }
    ).sort_values("event_timestamp", ignore_index=True)


def lay_out_project(dest: Path, first_window: tuple[datetime, datetime]) -> pd.DataFrame:
    """Copy the project template to `dest` and write its data; return every day's row.

    The label file holds the days of `first_window` ([start, end)) only: the first training's
    history. The city's static facts are one row dated before the data set begins.
    """
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    rows = daily_rows()
    start, end = (pd.Timestamp(t) for t in first_window)
    data = dest / "feature_repo" / "data"
    data.mkdir()
    first = rows[(rows["event_timestamp"] >= start) & (rows["event_timestamp"] < end)]
    first.to_parquet(data / "seattle_weather_labels.parquet", index=False)
    facts = pd.DataFrame(
        {
            "city_id": [CITY],
            "event_timestamp": [rows["event_timestamp"].min() - pd.Timedelta(days=1)],
            "latitude": [_LATITUDE],
        }
    )
    facts.to_parquet(data / "city_facts.parquet", index=False)
    return rows
