"""Outcomes refresh the bike model's lag features in the online store through the push source,
and the offline store with it: the pushed row equals the training file's row of that hour, and is
what `get_historical_features` returns for the same entity and time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.events import open_event_log
from loopstack.core.events.topics import OUTCOMES
from loopstack.core.settings import load_settings
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.push import LagPusher

from tests.monitoring.feedback.builders import DATA, PROJECT_DIR, bike_rows, outcome_event, spec
from tests.monitoring.feedback.test_join import append

FEATURES = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


def test_pushed_lags_equal_the_point_in_time_training_features(tmp_path: Path) -> None:
    from loopstack.features.online import online_features
    from loopstack.features.store import apply

    settings = load_settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        events={"backend": "sqlite", "partitions": 2},
        feedback={"read_model_url": f"sqlite:///{tmp_path / 'rm.db'}"},
    )
    store = apply(settings)
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    bike = spec("bike-demand")
    pusher = LagPusher(read_model, settings.feedback.push_sources, lambda: store)
    consumer = FeedbackConsumer(
        settings, log, read_model, pusher=pusher, catalog=ModelCatalog(specs={"bike-demand": bike})
    )
    rows = bike_rows(230, start=330)  # spans 2011-01-18, which has missing hours
    hours = [t.to_pydatetime() for t in rows["event_timestamp"]]
    outcomes = [
        outcome_event(int(y), model="bike-demand", entity_key={"city_id": "dc"}, event_time=h)
        for h, y in zip(hours, rows["bikers"], strict=True)
    ]
    late = outcomes.pop(200)  # one hour of the last week arrives after the newer ones
    append(log, OUTCOMES, outcomes)
    consumer.drain()
    consumer.housekeeping()
    append(log, OUTCOMES, [late])
    consumer.drain()
    consumer.housekeeping()

    at = hours[-1] + timedelta(hours=1)
    online = online_features(store, bike, [{"city_id": "dc"}])
    assert {online.event_timestamps[0][f] for f in FEATURES} == {at}
    assert all(online.values[0][f] is not None for f in FEATURES)
    # The training file's row of that hour: the same definitions, computed by prepare.py.
    lags = pd.read_parquet(DATA / "bike_demand_lags.parquet")
    expected_row = lags[lags["event_timestamp"] == pd.Timestamp(at)]
    assert len(expected_row) == 1
    # Offline, the pushed row is what a point-in-time join at that hour now reads.
    entity = pd.DataFrame({"city_id": ["dc"], "event_timestamp": [pd.Timestamp(at)]})
    historical = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service("bike_demand_v1")
    ).to_df()
    assert len(historical) == 1
    for feature in FEATURES:
        expected = expected_row[feature].iloc[0]
        got = online.values[0][feature]
        if pd.isna(expected):
            assert got is None and pd.isna(historical[feature].iloc[0]), feature
        else:
            assert got == pytest.approx(float(expected), abs=1e-4), feature
            assert historical[feature].iloc[0] == pytest.approx(float(expected), abs=1e-4)
    consumer.close()
    read_model.close()
    log.close()
