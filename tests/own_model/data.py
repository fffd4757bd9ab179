"""A user's project on a real public data set, laid out at test time from the template here.

The data: `seattle-weather.csv` of the `vega-datasets` package (a test dependency, MIT; the
data are NOAA public-domain daily observations in Seattle, 2012-2015), read offline from the
installed package. The project holds two models of it: `seattle-weather` (the day's maximum
temperature, a regression) and `seattle-sky` (the day's weather: drizzle, rain, sun, snow or
fog). Only one window of labels is written as each model's file; later labels must reach
training as feedback.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd

__all__ = [
    "CITY",
    "MODEL",
    "SKY_MODEL",
    "SKY_READINGS",
    "TEMPLATE",
    "daily_rows",
    "lay_out_project",
]

TEMPLATE = Path(__file__).resolve().parent / "project"
MODEL = "seattle-weather"
SKY_MODEL = "seattle-sky"
SKY_READINGS = ["month", "precipitation", "temp_max", "temp_min", "wind"]
"""The request fields of `seattle-sky`."""
CITY = "seattle"
_LATITUDE = 47.61
_LABEL_COLUMNS = {
    MODEL: ["month", "precipitation", "temp_min", "wind", "temp_max"],
    SKY_MODEL: [*SKY_READINGS, "weather"],
}
"""Each model's label file: its request fields and its target, after the key and time."""


def daily_rows() -> pd.DataFrame:
    """Every day of the data set as a label row: key, prediction time, readings, `weather`."""
    from vega_datasets import local_data

    raw = local_data.seattle_weather()
    return pd.DataFrame(
        {
            "city_id": CITY,
            "event_timestamp": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
            "month": raw["date"].dt.month.astype("int64"),
            "precipitation": raw["precipitation"].astype("float64"),
            "temp_max": raw["temp_max"].astype("float64"),
            "temp_min": raw["temp_min"].astype("float64"),
            "wind": raw["wind"].astype("float64"),
            "weather": raw["weather"].astype(str),
        }
    ).sort_values("event_timestamp", ignore_index=True)


def lay_out_project(dest: Path, labels: tuple[datetime, datetime]) -> pd.DataFrame:
    """Copy the project template to `dest` and write its data; return every day's row.

    Each model's label file holds the days of `labels` ([start, end)) only: its first
    training's history. The city's static facts are one row dated before the data set begins.
    """
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    rows = daily_rows()
    start, end = (pd.Timestamp(t) for t in labels)
    data = dest / "feature_repo" / "data"
    data.mkdir()
    window = rows[(rows["event_timestamp"] >= start) & (rows["event_timestamp"] < end)]
    for model, columns in _LABEL_COLUMNS.items():
        labelled = window[["city_id", "event_timestamp", *columns]]
        labelled.to_parquet(data / f"{model.replace('-', '_')}_labels.parquet", index=False)
    facts = pd.DataFrame(
        {
            "city_id": [CITY],
            "event_timestamp": [rows["event_timestamp"].min() - pd.Timedelta(days=1)],
            "latitude": [_LATITUDE],
        }
    )
    facts.to_parquet(data / "city_facts.parquet", index=False)
    return rows
