"""Point-in-time correctness of training frames on the real data, through both offline engines,
and the Dask engine's dropped-row trap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from loopstack.core.errors import NotFound
from loopstack.core.modelspec import ModelSpec
from loopstack.features.errors import (
    EmptyWindow,
    FeaturesOutsideTtl,
    InvalidWindow,
    UnknownFeatureService,
)
from loopstack.features.registry import feature_service
from loopstack.features.training import historical_features, training_frame

from .conftest import YEAR_END, YEAR_START, Features

HOUR = pd.Timedelta(hours=1)
LAGS = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


def lags_from_raw_series(labels: pd.DataFrame, at: pd.Series) -> pd.DataFrame:
    """Recompute the lag features at times `at` using only counts of hours that ENDED by then.

    Independent of prepare.py: hour H's count is known at H+1h, so at time t only hours with
    start <= t - 1h count; the search below is strictly-before on hour starts.
    """
    series = labels.set_index("event_timestamp")["bikers"].sort_index()
    starts = series.index.asi8  # int64 nanoseconds: tz-aware numpy arrays are object arrays
    cumsum = np.concatenate([[0.0], np.cumsum(series.to_numpy(dtype=float))])
    t = pd.DatetimeIndex(at).asi8
    last = series.reindex(pd.DatetimeIndex(at) - HOUR).to_numpy(dtype=float)
    yesterday = series.reindex(pd.DatetimeIndex(at) - 24 * HOUR).to_numpy(dtype=float)
    lo = np.searchsorted(starts, t - 168 * HOUR.value, side="left")
    hi = np.searchsorted(starts, t, side="left")  # hours starting strictly before t
    count = hi - lo
    mean = np.where(count >= 24, (cumsum[hi] - cumsum[lo]) / np.maximum(count, 1), np.nan)
    return pd.DataFrame({LAGS[0]: last, LAGS[1]: yesterday, LAGS[2]: mean})


# Windows holding the missing hours of the training files (Jan 18, Jan 26-27, Feb 22; the files
# end with February): the whole history, and one starting mid-way, whose 7-day means reach back
# before the window.
WINDOWS = [
    (datetime(2011, 1, 1, tzinfo=UTC), datetime(2011, 3, 1, tzinfo=UTC)),
    (datetime(2011, 2, 15, tzinfo=UTC), datetime(2011, 3, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("start", "end"), WINDOWS, ids=["jan-feb", "late-feb"])
def test_bike_training_frame_is_point_in_time_correct(
    engines: Features,
    bike_spec: ModelSpec,
    bike_labels: pd.DataFrame,
    start: datetime,
    end: datetime,
) -> None:
    frame = training_frame(engines.settings, bike_spec, start, end, store=engines.store)

    in_window = bike_labels["event_timestamp"].between(start, end, inclusive="left")
    assert len(frame) == in_window.sum() > 200  # no label row lost to the TTL trap
    assert frame["event_timestamp"].is_monotonic_increasing
    assert list(frame.columns[-1:]) == ["bikers"]
    assert set(bike_spec.request_fields) <= set(frame.columns)
    expected = lags_from_raw_series(bike_labels, frame["event_timestamp"])
    for name in LAGS:
        got = frame[name].astype("float64").to_numpy()
        np.testing.assert_allclose(
            got,
            expected[name].to_numpy(),
            rtol=0,
            atol=1e-3,
            err_msg=f"{name} used data not available at the row's time",
        )
    # Missing hours stay missing (lag by time, not by row); integer counts stay integers.
    assert frame["bikers_last_hour"].isna().sum() >= 1  # the hour after each gap
    assert str(frame["bikers_last_hour"].dtype) == "Int64"
    assert str(frame["bikers_mean_7d"].dtype) == "float64"


def test_the_join_is_time_sensitive_so_the_leak_check_can_fail(
    features: Features, bike_labels: pd.DataFrame
) -> None:
    # Asking one hour LATER (when hour H's count is out) must return hour H's count: this is
    # what a leaky join would show at H, and what the test above would have caught.
    service = feature_service(features.store, "bike_demand_v1")
    sample = bike_labels.iloc[1000:1200]
    later = sample[["city_id"]].assign(event_timestamp=sample["event_timestamp"] + HOUR)
    got = historical_features(features.store, service, later)
    np.testing.assert_array_equal(
        got["bikers_last_hour"].to_numpy(dtype=float), sample["bikers"].to_numpy(dtype=float)
    )


def test_credit_training_frame_window_and_snapshot(
    features: Features, credit_spec: ModelSpec, customers: pd.DataFrame
) -> None:
    start, end = datetime(2011, 3, 1, tzinfo=UTC), datetime(2011, 4, 1, tzinfo=UTC)
    frame = training_frame(features.settings, credit_spec, start, end, store=features.store)

    inside = customers[
        (customers["event_timestamp"] >= start) & (customers["event_timestamp"] < end)
    ]
    assert len(frame) == len(inside) > 700
    assert frame["event_timestamp"].between(start, end, inclusive="left").all()
    assert set(frame["default"].unique()) <= {0, 1} and str(frame["default"].dtype) == "int64"
    snapshot = inside.set_index("customer_id").loc[frame["customer_id"]]
    np.testing.assert_array_equal(frame["student"].to_numpy(), snapshot["student"].to_numpy())
    np.testing.assert_allclose(frame["balance"], snapshot["balance"])
    np.testing.assert_allclose(frame["income"], snapshot["income"])


# Rows each engine returns itself for the two entity frames below: Dask drops what has data but
# none within the TTL (and one of two identical rows); DuckDB keeps every row.
RAW_ROWS = {"file": (2, 2), "duckdb": (4, 3)}


def test_rows_outside_ttl_come_back_missing_in_input_order_on_both_engines(
    engines: Features, bike_lags: pd.DataFrame
) -> None:
    service = feature_service(engines.store, "bike_demand_v1")
    when = pd.to_datetime(
        ["2011-02-01 12:00", "2011-06-01 00:00", "2011-02-15 10:00", "2011-02-01 12:00"], utc=True
    )
    entity_df = pd.DataFrame(
        {"city_id": "dc", "event_timestamp": when, "request_id": [7, 8, 9, 10]}
    )

    # The trap is real in Dask: the row of 2011-06-01 (data exists, none within the 2h TTL)
    # vanishes, and so does one of the two identical rows (7 and 10).
    raw = engines.store.get_historical_features(entity_df=entity_df, features=service).to_df()
    assert len(raw) == RAW_ROWS[engines.settings.features.offline_store][0]

    got = historical_features(engines.store, service, entity_df)
    assert len(got) == 4
    assert got["request_id"].tolist() == [7, 8, 9, 10]  # input order and extra columns kept
    assert got.loc[1, LAGS].isna().all()
    expected = bike_lags.set_index("event_timestamp").loc[when[[0, 2, 3]], LAGS]
    pd.testing.assert_frame_equal(
        got.loc[[0, 2, 3], LAGS].reset_index(drop=True), expected.reset_index(drop=True)
    )
    assert str(got["bikers_last_hour"].dtype) == "Int64"  # no drift to float64 with the gap

    with pytest.raises(FeaturesOutsideTtl, match="1 of 4 entity rows"):
        historical_features(engines.store, service, entity_df, missing="raise")


def test_credit_rows_before_the_first_snapshot_are_kept_as_unknown(
    engines: Features, customers: pd.DataFrame
) -> None:
    service = feature_service(engines.store, "credit_default_v1")
    known = customers.iloc[5000]  # a mid-year customer
    before = known["event_timestamp"] - timedelta(days=1)
    entity_df = pd.DataFrame(
        {
            "customer_id": [int(known["customer_id"]), 123_456, int(known["customer_id"])],
            "event_timestamp": [before, known["event_timestamp"], known["event_timestamp"]],
        }
    )
    raw = engines.store.get_historical_features(entity_df=entity_df, features=service).to_df()
    # Dask drops the "before" row and keeps the unknown customer with NaN; DuckDB keeps both.
    assert len(raw) == RAW_ROWS[engines.settings.features.offline_store][1]

    got = historical_features(engines.store, service, entity_df)
    assert len(got) == 3
    assert got.loc[[0, 1], ["student", "balance", "income"]].isna().all().all()
    assert got.loc[2, "student"] == known["student"]
    assert got.loc[2, "balance"] == pytest.approx(known["balance"])


def test_window_errors(features: Features, bike_spec: ModelSpec) -> None:
    s = features.settings
    with pytest.raises(InvalidWindow, match="start strictly before the end"):
        training_frame(s, bike_spec, YEAR_END, YEAR_START, store=features.store)
    with pytest.raises(EmptyWindow, match="bike_demand_labels"):
        training_frame(
            s, bike_spec, datetime(2015, 1, 1), datetime(2015, 2, 1), store=features.store
        )
    renamed = bike_spec.model_copy(update={"feature_service": "bike_demand_v9"})
    with pytest.raises(UnknownFeatureService, match="bike_demand_v1") as info:
        training_frame(s, renamed, YEAR_START, YEAR_END, store=features.store)
    assert isinstance(info.value, NotFound)


def test_no_entity_rows_give_an_empty_typed_frame(features: Features) -> None:
    service = feature_service(features.store, "bike_demand_v1")
    empty = pd.DataFrame({"city_id": pd.Series([], dtype=object), "event_timestamp": []})
    got = historical_features(features.store, service, empty)
    assert got.empty and list(got.columns) == ["city_id", "event_timestamp", *LAGS]
    assert str(got["bikers_last_hour"].dtype) == "Int64"
