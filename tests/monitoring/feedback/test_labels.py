"""Joined outcomes become training labels in the Feast offline store: once per change of a
request's winning outcome, whatever the delivery (duplicates, a restarted consumer, a retried
export), human decisions over system outcomes, shadows never labelled twice."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from feast import FeatureStore
from loopstack.core.events import EventLog
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.features.offline import SEED, dataset_files
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.labels import LabelExporter
from loopstack.monitoring.feedback.tables import training_labels
from sqlalchemy import func, select, update

from tests.monitoring.feedback.builders import Scenario, bike_scenario
from tests.monitoring.feedback.conftest import Clock
from tests.monitoring.feedback.test_join import append, catalog


@pytest.fixture
def store(settings: Settings) -> Iterator[FeatureStore]:
    """The repository applied in the test's state dir (label datasets seeded there)."""
    from loopstack.features.store import apply

    yield apply(settings)


def consumer_of(
    settings: Settings, log: EventLog, read_model: ReadModel, store: FeatureStore, clock: Clock
) -> FeedbackConsumer:
    models: ModelCatalog = catalog()
    exporter = LabelExporter(read_model, models, lambda: store)
    return FeedbackConsumer(settings, log, read_model, catalog=models, labels=exporter, clock=clock)


def fed_back(store: FeatureStore) -> pd.DataFrame:
    """Every row the exporter appended to the bike label dataset (the parts, not the seed)."""
    source = store.get_data_source("bike_demand_labels")
    parts = [p for p in dataset_files(source.path) if p.name != SEED]
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def deliver(consumer: FeedbackConsumer, log: EventLog, scenario: Scenario) -> None:
    append(log, OUTCOMES, scenario.early)
    append(log, PREDICTIONS, scenario.predictions)
    append(log, OUTCOMES, scenario.outcomes)
    consumer.drain()


def test_outcomes_become_label_rows_once_human_decisions_win(
    settings: Settings, event_log: EventLog, read_model: ReadModel, store: FeatureStore,
    clock: Clock,
) -> None:  # fmt: skip
    from loopstack.features.training import resolve_labels

    scenario = bike_scenario()
    consumer = consumer_of(settings, event_log, read_model, store, clock)
    deliver(consumer, event_log, scenario)
    consumer.housekeeping()  # the drain's own housekeeping may have exported some already
    recorded = len(fed_back(store))

    # A restarted consumer, every event delivered again: nothing new is recorded or exported.
    consumer.close()
    again = consumer_of(settings, event_log, read_model, store, clock)
    deliver(again, event_log, scenario)
    assert again.housekeeping()["labels"] == 0

    rows = fed_back(store)
    with read_model.engine.connect() as conn:
        in_read_model = conn.execute(select(func.count()).select_from(training_labels)).scalar()
    assert len(rows) == in_read_model
    champions = {e["prediction_id"]: e for e in scenario.expected if e["route"] == "champion"}
    assert set(rows["prediction_id"]) == set(champions)  # shadows answered no caller
    assert set(rows["label_origin"]) == {"feedback", "human"}

    resolved = resolve_labels(rows, "city_id", "event_timestamp")
    assert resolved["prediction_id"].is_unique and len(resolved) == len(champions)
    for row in resolved.itertuples():
        expected = champions[row.prediction_id]
        assert row.bikers == pytest.approx(expected["y"]), row.prediction_id
        assert (row.label_origin == "human") == expected["human"]
        assert row.city_id == "dc" and row.season is not None
    # Stamped with the request's time: the hour the prediction was for.
    hours = {e.data["prediction_id"]: e.data["request_time"] for e in scenario.predictions}
    for row in resolved.itertuples():
        assert row.event_timestamp == pd.Timestamp(hours[row.prediction_id])

    # An export that crashed after writing its part but before marking the rows is redone
    # into the same part: the offline store still holds each row once.
    source = store.get_data_source("bike_demand_labels")
    last = max(p.stem for p in dataset_files(source.path) if p.name != SEED)
    first_seq = int(last.rsplit("-", 1)[1])
    with read_model.engine.begin() as conn:
        conn.execute(
            update(training_labels).where(training_labels.c.seq >= first_seq).values(exported=False)
        )
    assert again.housekeeping()["labels"] > 0
    assert len(fed_back(store)) == recorded
    again.close()


def test_a_human_decision_before_the_system_outcome_still_wins(
    settings: Settings, event_log: EventLog, read_model: ReadModel, store: FeatureStore,
    clock: Clock,
) -> None:  # fmt: skip
    from tests.monitoring.feedback.builders import T0, bike_rows, outcome_event, prediction_event

    row = bike_rows(1, start=700).iloc[0]
    hour = row["event_timestamp"].to_pydatetime()
    prediction = prediction_event(
        "p-1", "bike-demand", "1", "champion", hour, {"prediction": [10.0]},
        {"season": int(row["season"])}, {"city_id": "dc"},
    )  # fmt: skip
    human = outcome_event(99, pid="p-1", source="human", observed_at=T0)
    system = outcome_event(7, pid="p-1", model="bike-demand", observed_at=T0 + pd.Timedelta("1h"))
    consumer = consumer_of(settings, event_log, read_model, store, clock)
    append(event_log, PREDICTIONS, [prediction])
    append(event_log, OUTCOMES, [human])
    consumer.drain()
    append(event_log, OUTCOMES, [system])  # later, but a system outcome never beats a human one
    consumer.drain()
    consumer.housekeeping()
    rows = fed_back(store)
    assert rows[["prediction_id", "bikers", "label_origin"]].values.tolist() == [
        ["p-1", 99, "human"]
    ]
    consumer.close()


def test_models_without_a_registered_label_source_keep_their_rows_pending(
    settings: Settings, event_log: EventLog, read_model: ReadModel, clock: Clock
) -> None:  # fmt: skip
    from loopstack.features.store import open_store

    scenario = bike_scenario(n=10)
    # Never applied: the registry has no label source, so nothing can be exported yet.
    consumer = consumer_of(settings, event_log, read_model, open_store(settings), clock)
    deliver(consumer, event_log, scenario)
    assert consumer.housekeeping()["labels"] == 0
    with read_model.engine.connect() as conn:
        states = list(conn.execute(select(training_labels.c.exported)).scalars())
    assert len(states) >= 10 and not any(states)  # one per request, more where overridden
    consumer.close()
