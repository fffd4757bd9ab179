"""Poison outcomes: refused at intake whether or not their prediction is joined yet; one in the
log (published around intake, or older than its checks) is dead-lettered with its reason while
the consumer goes on; a window whose metrics still fail is recorded as failed and the others
computed; a rebuild skips what the consumer dead-lettered and never makes quality reads fail."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from loopstack.core.events import Event, EventLog, EventService
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.store import ReadModel

from tests.monitoring.feedback.builders import (
    API_CATALOG,
    T0,
    iso,
    outcome_event,
    prediction_event,
)
from tests.monitoring.feedback.conftest import Clock
from tests.monitoring.feedback.test_join import append

SIZE = 10  # API_CATALOG's window size


def bike(i: int, version: str = "1") -> Event:
    """A bike-demand answer (a regression) of hour `i`."""
    return prediction_event(
        f"pb{version}-{i}",
        "bike-demand",
        version,
        "champion",
        T0 + timedelta(hours=i),
        {"prediction": [100.0 + i]},
        {"season": 1, "hr": i % 24},
        {"city_id": "dc"},
    )


def credit(i: int, version: str = "1", probabilities: bool = True) -> Event:
    """A credit-default answer; without `probabilities`, as older servers logged it (the score
    only)."""
    p1 = (i % 10) / 10
    outputs: dict[str, Any] = {"prediction": [p1]}
    if probabilities:
        outputs = {"prediction": [int(p1 >= 0.5)], "probabilities": {"0": 1 - p1, "1": p1}}
    return prediction_event(
        f"pc{version}-{i}",
        "credit-default",
        version,
        "champion",
        T0 + timedelta(hours=i),
        outputs,
        {"student": "No"},
        {"customer_id": i},
    )


def dead_letters(log: EventLog) -> dict[str, str]:
    """Event id -> error of the outcomes' dead letters."""
    items = EventService(log).dead_letters(OUTCOMES, limit=1000).items
    return {i["dead_letter"]["event_id"]: i["dead_letter"]["error"] for i in items}


def test_out_of_range_and_out_of_class_outcomes_are_refused_at_intake_even_before_the_join(
    client: TestClient, consumer: FeedbackConsumer, event_log: EventLog
) -> None:
    never_logged = {"prediction_id": "never-logged", "outcome": 1e300, "observed_at": iso(T0)}
    answer = client.post("/v1/feedback", json=[never_logged])
    assert answer.status_code == 422
    assert "feedback.max_outcome_abs" in answer.json()["items"][0]["reason"]

    # The prediction is in the log, not yet in the read model: the consumer catches up while
    # intake waits for it, and the outcome is checked against credit-default's classes.
    append(event_log, PREDICTIONS, [credit(0)])
    catch_up = threading.Timer(0.5, consumer.drain)
    catch_up.start()
    answer = client.post(
        "/v1/feedback",
        json=[
            {"prediction_id": "pc1-0", "outcome": 5, "observed_at": iso(T0)},
            {"prediction_id": "pc1-0", "outcome": 1e300, "observed_at": iso(T0)},
            {"prediction_id": "pc1-0", "outcome": 1, "observed_at": iso(T0)},
        ],
    )
    catch_up.join()
    assert answer.status_code == 207, answer.text
    first, second, third = answer.json()["items"]
    assert first["status"] == second["status"] == "rejected"
    assert "is not a class of model 'credit-default'" in first["reason"]
    assert "allowed values are 0, 1" in second["reason"]
    assert third["status"] == "accepted"

    regression = {"model": "bike-demand", "entity_key": {"city_id": "dc"}}
    huge = {**regression, "outcome": -2e15, "observed_at": iso(T0), "event_time": iso(T0)}
    answer = client.post("/v1/feedback", json=[huge])
    assert answer.status_code == 422 and "out of range" in answer.json()["items"][0]["reason"]


def test_poison_outcomes_in_the_log_are_dead_lettered_and_the_consumer_goes_on(
    settings: Settings, event_log: EventLog, read_model: ReadModel, clock: Clock
) -> None:
    consumer = FeedbackConsumer(settings, event_log, read_model, catalog=API_CATALOG, clock=clock)
    predictions = [bike(i) for i in range(2 * SIZE)] + [credit(i) for i in range(2 * SIZE)]
    append(event_log, PREDICTIONS, predictions)
    consumer.drain()
    # Published around intake (straight into the log), before the valid ones.
    poison = [
        outcome_event(1e300, pid="pb1-0"),
        outcome_event(5, pid="pc1-1"),
        outcome_event("1e300", pid="pc1-2"),
    ]
    valid = [outcome_event(100 + i, pid=f"pb1-{i}") for i in range(2 * SIZE)]
    valid += [outcome_event(i % 2, pid=f"pc1-{i}") for i in range(2 * SIZE)]
    append(event_log, OUTCOMES, poison + valid)
    consumer.drain()

    letters = dead_letters(event_log)
    assert set(letters) == {e.id for e in poison}
    assert "PoisonOutcome" in letters[poison[0].id] and "max_outcome_abs" in letters[poison[0].id]
    assert "not one of the classes 0, 1" in letters[poison[1].id]
    queries = QualityQueries(read_model)
    for model, metric in (("bike-demand", "rmse"), ("credit-default", "auc")):
        windows = queries.quality(model)["windows"]
        assert [w["window"] for w in windows] == [0, 1]
        assert all(w["metrics"]["count"] == SIZE for w in windows)  # every valid outcome, once
        assert all(math.isfinite(w["metrics"][metric]) for w in windows)
    assert queries.prediction("pb1-0")["outcome"]["value"] == 100
    assert queries.prediction("pc1-1")["outcome"]["value"] == 1

    # A restart does not meet them again.
    again = FeedbackConsumer(settings, event_log, read_model, catalog=API_CATALOG, clock=clock)
    assert again.drain() == 0 and len(dead_letters(event_log)) == len(poison)
    again.close()
    consumer.close()


def test_a_window_whose_metrics_fail_is_recorded_and_the_others_are_computed(
    client: TestClient, consumer: FeedbackConsumer, event_log: EventLog
) -> None:
    # Answers logged before servers logged class probabilities: an outcome of 5 fits their
    # score-only document, so only the metrics can find out, and they fail for that window.
    old = [credit(i, version="old", probabilities=False) for i in range(SIZE)]
    new = [credit(i, version="2") for i in range(SIZE)]
    append(event_log, PREDICTIONS, old + new)
    outcomes = [outcome_event(5 if i == 3 else i % 2, pid=f"pcold-{i}") for i in range(SIZE)]
    outcomes += [outcome_event(i % 2, pid=f"pc2-{i}") for i in range(SIZE)]
    append(event_log, OUTCOMES, outcomes)
    consumer.drain()
    done = consumer.housekeeping()
    assert done["failed"] == 1

    quality = client.get("/v1/models/credit-default/quality").json()
    [failed] = quality["failed_windows"]
    assert (failed["version"], failed["window"]) == ("old", 0)
    assert "ValueError" in failed["reason"]
    by_version = {w["version"]: w for w in quality["windows"]}
    assert by_version["old"]["metrics"] == {}
    assert math.isfinite(by_version["2"]["metrics"]["auc"])
    gauge = consumer.metrics.registry.get_sample_value(
        "loopstack_quality_windows_failed", {"model": "credit-default"}
    )
    assert gauge == 1

    # A human corrects the outcome: the window is computed again, and no longer failed.
    fix = outcome_event(1, pid="pcold-3", source="human", observed_at=T0 + timedelta(hours=1))
    append(event_log, OUTCOMES, [fix])
    consumer.drain()
    consumer.housekeeping()
    quality = client.get("/v1/models/credit-default/quality").json()
    assert quality["failed_windows"] == []
    assert {w["version"]: w for w in quality["windows"]}["old"]["metrics"]["count"] == SIZE
    assert (
        consumer.metrics.registry.get_sample_value(
            "loopstack_quality_windows_failed", {"model": "credit-default"}
        )
        == 0
    )


def test_rebuild_skips_poison_and_quality_reads_never_fail(
    client: TestClient, consumer: FeedbackConsumer, event_log: EventLog
) -> None:
    append(event_log, PREDICTIONS, [bike(i) for i in range(4 * SIZE)])
    outcomes = [outcome_event(1e300, pid="pb1-5"), outcome_event("hail", pid="pb1-6")]
    outcomes += [outcome_event(90 + i, pid=f"pb1-{i}") for i in range(4 * SIZE)]
    append(event_log, OUTCOMES, outcomes)
    consumer.drain()
    before = [w["metrics"] for w in client.get("/v1/models/bike-demand/quality").json()["windows"]]
    assert len(before) == 4

    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def read() -> None:
        with TestClient(client.app) as reader:
            while not stop.is_set():
                answer = reader.get("/v1/models/bike-demand/quality")
                statuses.append((answer.status_code, answer.text))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rebuilt = client.post("/v1/feedback/rebuild")
    stop.set()
    reader.join(timeout=30)
    assert rebuilt.status_code == 200, rebuilt.text
    assert rebuilt.json()["skipped"] == 2 and rebuilt.json()["windows"] == 4
    assert statuses and all(code in (200, 503) for code, _ in statuses), statuses[:3]
    assert all("being rebuilt" in text for code, text in statuses if code == 503)
    after = client.get("/v1/models/bike-demand/quality").json()
    assert [w["metrics"] for w in after["windows"]] == before and after["failed_windows"] == []


@pytest.mark.parametrize("value", [1e16, -1e16])
def test_the_projector_bound_follows_the_setting(
    settings: Settings, event_log: EventLog, read_model: ReadModel, value: float
) -> None:
    consumer = FeedbackConsumer(settings, event_log, read_model, catalog=API_CATALOG)
    assert consumer.projector.max_outcome_abs == settings.feedback.max_outcome_abs == 1e15
    append(event_log, PREDICTIONS, [bike(0)])
    poison = outcome_event(value, pid="pb1-0")
    append(event_log, OUTCOMES, [poison])
    consumer.drain()
    assert set(dead_letters(event_log)) == {poison.id}
    consumer.close()


def test_quality_reads_answer_503_while_a_rebuild_runs_and_a_new_rebuild_clears_it(
    client: TestClient, read_model: ReadModel
) -> None:
    # What a rebuild that died midway leaves behind: its marker, committed with the reset.
    read_model.reset("feedback", rebuilding=T0.replace(tzinfo=None))
    answer = client.get("/v1/models/bike-demand/quality")
    assert answer.status_code == 503
    assert "is being rebuilt (since 2026-11-01T12:00:00Z)" in answer.json()["error"]
    assert "run `loopstack feedback rebuild` again" in answer.json()["error"]
    assert client.post("/v1/feedback/rebuild").status_code == 200
    assert client.get("/v1/models/bike-demand/quality").status_code == 200
