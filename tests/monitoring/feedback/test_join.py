"""Replaying predictions and outcomes (shuffled, duplicated, early, overridden, orphaned) gives
the join and the windowed metrics scikit-learn computes on the correctly joined frame."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from loopstack.core.events import Event, EventLog, EventService, OutMessage
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback import ModelCatalog, QualityQueries, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer

from tests.monitoring.feedback.builders import Scenario, bike_scenario, credit_scenario, spec
from tests.monitoring.feedback.conftest import Clock
from tests.monitoring.feedback.expected import assert_close, reference_metrics

JOIN_WINDOW_S = 600


def append(log: EventLog, topic: str, events: list[Event]) -> None:
    """Put events into the log as a producer would (partitioned by their key)."""
    log.append([OutMessage(topic, e.partitionkey, e.to_json()) for e in events])


def replay(
    settings: Settings,
    log: EventLog,
    read_model: ReadModel,
    scenario: Scenario,
    clock: Clock,
    catalog: ModelCatalog,
) -> FeedbackConsumer:
    """Early outcomes first (they wait), then predictions and the other outcomes."""
    consumer = FeedbackConsumer(settings, log, read_model, catalog=catalog, clock=clock)
    append(log, OUTCOMES, scenario.early)
    consumer.drain()
    clock.advance(JOIN_WINDOW_S / 2)
    append(log, PREDICTIONS, scenario.predictions)
    append(log, OUTCOMES, scenario.outcomes)
    consumer.drain()
    return consumer


def catalog() -> ModelCatalog:
    """Both models with small windows and a short join window."""
    return ModelCatalog(
        specs={
            "bike-demand": spec("bike-demand", window_size=25, join_window_s=JOIN_WINDOW_S),
            "credit-default": spec("credit-default", window_size=20, join_window_s=JOIN_WINDOW_S),
        }
    )


def check_join(queries: QualityQueries, model: str, scenario: Scenario) -> list[dict[str, Any]]:
    """The read model joined exactly the expected rows, with the winning outcome."""
    joined = queries.joined(model)
    got = {r["prediction_id"]: r for r in joined}
    assert set(got) == {e["prediction_id"] for e in scenario.expected}
    for e in scenario.expected:
        row = got[e["prediction_id"]]
        assert (row["version"], row["route"]) == (e["version"], e["route"])
        assert row["outcome_value"] == pytest.approx(e["y"])
        assert row["score"] == pytest.approx(e["score"])
        assert (row["outcome_source"] == "human") == e["human"]
        assert row["segments"] == e["segments"]
    return joined


def check_windows(
    queries: QualityQueries,
    model: str,
    task: str,
    joined: list[dict[str, Any]],
    size: int,
    segments: list[str],
) -> int:
    """Each closed window's metrics (overall, by segment, gaps) equal scikit-learn's."""
    members: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in joined:
        members[(row["version"], row["route"], row["window_no"])].append(row)
    windows = queries.quality(model)["windows"]
    closed = {(w["version"], w["route"], w["window"]): w for w in windows}
    full = {k for k, rows in members.items() if len(rows) == size}
    assert set(closed) == full
    for key, window in closed.items():
        rows = members[key]
        what = f"{model} {key}"
        assert_close(
            window["metrics"],
            reference_metrics(task, [r["outcome_value"] for r in rows], [r["score"] for r in rows]),
            what,
        )
        human = sum(r["outcome_source"] == "human" for r in rows) / size
        assert window["metrics"]["override_rate"] == pytest.approx(human)
        for column in segments:
            per_value: dict[str, dict[str, float]] = {}
            for value in {r["segments"][column] for r in rows}:
                sub = [r for r in rows if r["segments"][column] == value]
                per_value[value] = reference_metrics(
                    task, [r["outcome_value"] for r in sub], [r["score"] for r in sub]
                )
                assert_close(window["segments"][column][value], per_value[value], f"{what} {value}")
            if len(per_value) >= 2:
                for metric in ("rmse", "accuracy"):
                    found = [m[metric] for m in per_value.values() if metric in m]
                    if found:
                        gap = window["gaps"][column][metric]
                        assert gap == pytest.approx(max(found) - min(found))
    return len(closed)


def test_bike_replay_matches_scikit_learn_and_dead_letters_orphans(
    settings: Settings, event_log: EventLog, read_model: ReadModel, clock: Clock
) -> None:
    scenario = bike_scenario()
    consumer = replay(settings, event_log, read_model, scenario, clock, catalog())
    queries = QualityQueries(read_model)
    joined = check_join(queries, "bike-demand", scenario)
    closed = check_windows(
        queries, "bike-demand", "regression", joined, 25, ["season", "weathersit"]
    )
    assert closed == 8  # 120 joined rows per version: 4 full windows each

    assert consumer.housekeeping()["orphans"] == 0  # the orphans' window is still open
    clock.advance(JOIN_WINDOW_S + 1)
    assert consumer.housekeeping()["orphans"] == len(scenario.orphans)
    letters = EventService(event_log).dead_letters(OUTCOMES, limit=100).items
    assert {i["dead_letter"]["event_id"] for i in letters} == scenario.orphans
    assert {i["dead_letter"]["reason"] for i in letters} == {"orphan"}
    assert all("no prediction within the join window" in i["dead_letter"]["error"] for i in letters)
    # Replaying everything again changes nothing: every event id was applied once.
    append(event_log, PREDICTIONS, scenario.predictions)
    append(event_log, OUTCOMES, scenario.outcomes)
    consumer.drain()
    assert check_join(queries, "bike-demand", scenario) == joined
    consumer.close()


def test_credit_replay_matches_scikit_learn(
    settings: Settings, event_log: EventLog, read_model: ReadModel, clock: Clock
) -> None:
    scenario = credit_scenario()
    consumer = replay(settings, event_log, read_model, scenario, clock, catalog())
    queries = QualityQueries(read_model)
    joined = check_join(queries, "credit-default", scenario)
    closed = check_windows(queries, "credit-default", "classification", joined, 20, ["student"])
    assert closed == 5 + 1  # 112 champion rows: 5 windows; 38 canary rows: 1
    consumer.close()
