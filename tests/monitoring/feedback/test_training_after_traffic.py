"""After live traffic, a training set holds exactly the outcomes fed back in its window, with the
lag features serving read: the repository's files stop at February (like the demo's), and every
later label and lag row reaches the Feast offline store only through feedback."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.events import Event, open_event_log
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import load_settings
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.labels import LabelExporter
from loopstack.monitoring.feedback.push import LagPusher

from tests.monitoring.feedback.builders import (
    DATA,
    PROJECT_DIR,
    outcome_event,
    prediction_event,
    spec,
)
from tests.monitoring.feedback.test_join import append

CUT = pd.Timestamp("2011-03-01", tz="UTC")
LIVE_START = datetime(2011, 3, 1, tzinfo=UTC)
BATCH_START = datetime(2011, 3, 2, tzinfo=UTC)
LIVE_END = datetime(2011, 3, 4, tzinfo=UTC)
LAGS = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]
TTL = timedelta(hours=2)  # of city_demand_lags
YEAR = DATA / "bike_demand_replay.parquet"
"""The whole year: label columns and the lag row of each hour (not a Feast source)."""


def project_until_march(root: Path) -> Path:
    """A copy of the project whose bike label and lag files end with February 2011."""
    repo = root / "feature_repo"
    (repo / "data").mkdir(parents=True)
    for path in (PROJECT_DIR / "feature_repo").glob("*.py"):
        shutil.copy(path, repo / path.name)
    shutil.copy(PROJECT_DIR / "feature_repo" / "feature_store.yaml", repo)
    for name in ("bike_demand_labels", "bike_demand_lags"):
        frame = pd.read_parquet(DATA / f"{name}.parquet")
        frame[frame["event_timestamp"] < CUT].to_parquet(repo / "data" / f"{name}.parquet")
    for name in ("credit_default_labels", "credit_customers"):
        shutil.copy(DATA / f"{name}.parquet", repo / "data")
    shutil.copytree(PROJECT_DIR / "models" / "bike-demand", root / "models" / "bike-demand")
    return root


def events_of(rows: pd.DataFrame, request_fields: list[str]) -> tuple[list[Event], list[Event]]:
    """A prediction per hour (the request's fields, the city) and its outcome by id."""
    predictions, outcomes = [], []
    for row in rows.itertuples(index=False):
        pid = f"live-{row.event_timestamp:%Y%m%d%H}"
        inputs = {f: getattr(row, f) for f in request_fields}
        inputs = {k: v.item() if hasattr(v, "item") else v for k, v in inputs.items()}
        predictions.append(
            prediction_event(
                pid,
                "bike-demand",
                "1",
                "champion",
                row.event_timestamp.to_pydatetime(),
                {"prediction": [100.0]},
                inputs,
                {"city_id": "dc"},
            )
        )
        outcomes.append(outcome_event(int(row.bikers), pid=pid))
    return predictions, outcomes


def test_training_after_live_traffic_holds_exactly_the_fed_back_labels_and_served_lags(
    tmp_path: Path,
) -> None:
    from loopstack.features.online import online_features
    from loopstack.features.store import apply, materialize
    from loopstack.features.training import training_frame

    settings = load_settings(
        project_dir=project_until_march(tmp_path / "project"),
        state_dir=tmp_path / "state",
        events={"backend": "sqlite", "partitions": 2},
        feedback={"read_model_url": f"sqlite:///{tmp_path / 'rm.db'}", "sweep_interval_s": 3600},
    )
    store = apply(settings)
    materialize(settings, datetime(2011, 1, 1, tzinfo=UTC), CUT.to_pydatetime(), store=store)
    bike = spec("bike-demand")
    catalog = ModelCatalog(specs={"bike-demand": bike})
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    pusher = LagPusher(read_model, settings.feedback.push_sources, lambda: store, catalog=catalog)
    consumer = FeedbackConsumer(
        settings,
        log,
        read_model,
        catalog=catalog,
        pusher=pusher,
        labels=LabelExporter(read_model, catalog, lambda: store),
    )
    year = pd.read_parquet(YEAR)
    live = year[year["event_timestamp"].between(LIVE_START, LIVE_END, inclusive="left")]
    live = live.reset_index(drop=True)

    # Day one, hour by hour: before each request, note what serving reads for it (the online
    # row, missing once older than the view's TTL); then its prediction and outcome arrive.
    served: dict[pd.Timestamp, dict[str, object]] = {}
    first_day = live[live["event_timestamp"] < BATCH_START]
    for i in range(len(first_day)):
        hour = first_day["event_timestamp"].iloc[i]
        seen = online_features(store, bike, [{"city_id": "dc"}])
        stamps = seen.event_timestamps[0]
        served[hour] = {
            f: seen.values[0][f] if stamps[f] is not None and hour - stamps[f] <= TTL else None
            for f in LAGS
        }
        predictions, outcomes = events_of(first_day.iloc[i : i + 1], bike.request_fields)
        append(log, PREDICTIONS, predictions)
        append(log, OUTCOMES, outcomes)
        consumer.drain()
        consumer.housekeeping()  # the next hour's lag row, online and offline; the label
    # Then two days at once, as a caller sending outcomes in batches does.
    predictions, outcomes = events_of(
        live[live["event_timestamp"] >= BATCH_START], bike.request_fields
    )
    append(log, PREDICTIONS, predictions)
    append(log, OUTCOMES, outcomes)
    consumer.drain()
    consumer.housekeeping()

    frame = training_frame(settings, bike, LIVE_START, LIVE_END, store=store, with_origin=True)
    assert len(frame) == len(live)
    assert set(frame["label_origin"]) == {"feedback"}
    pd.testing.assert_series_equal(frame["event_timestamp"], live["event_timestamp"])
    for column in [bike.target, *bike.request_fields]:
        assert frame[column].tolist() == live[column].tolist(), column
    for row in frame.itertuples(index=False):
        if row.event_timestamp in served:
            for feature in LAGS:
                want, got = served[row.event_timestamp][feature], getattr(row, feature)
                where = (row.event_timestamp, feature)
                assert pd.isna(got) if want is None else got == pytest.approx(want), where
    # Lags built from fed-back counts (and the file's history before them) are the year's own,
    # from the second hour on: the row at the history's end is in no file and no push.
    later = frame["event_timestamp"] > CUT
    for feature in LAGS:
        got, want = frame.loc[later, feature], live.loc[later, feature]
        assert got.astype("float64").tolist() == pytest.approx(
            want.astype("float64").tolist(), nan_ok=True
        ), feature

    # The first training's file rows and the fed-back ones together; or the fed-back ones only.
    since = datetime(2011, 2, 20, tzinfo=UTC)
    both = training_frame(settings, bike, since, LIVE_END, store=store, with_origin=True)
    in_file = int(year["event_timestamp"].between(since, CUT, inclusive="left").sum())
    assert both["label_origin"].value_counts().to_dict() == {"file": in_file, "feedback": len(live)}
    only = training_frame(settings, bike, since, LIVE_END, store=store, labels="feedback")
    assert len(only) == len(live) and "label_origin" not in only
    consumer.close()
    read_model.close()
    log.close()
