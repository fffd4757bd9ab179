"""The review queue: flagged predictions (low margin at serving time, outliers after the fact),
reviewers' decisions as human outcomes, the override rate per version; on SQLite and
PostgreSQL, whatever order the events arrive in."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from loopstack.core.events import Event, EventLog, Publisher
from loopstack.core.events.topics import PREDICTIONS
from loopstack.monitoring.feedback import ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.projector import FeedbackProjector
from loopstack.monitoring.feedback.review_queries import review_page

from tests.monitoring.feedback.builders import (
    API_CATALOG,
    T0,
    iso,
    outcome_event,
    prediction_event,
)
from tests.monitoring.feedback.test_join import append

MODEL = "credit-default"


def credit_prediction(i: int, p_default: float, margin_flag: bool) -> Event:
    """A served credit-default answer; `margin_flag`: the runtime flagged it needs_review."""
    event = prediction_event(
        f"c-{i}",
        MODEL,
        "1",
        "champion",
        T0 + timedelta(minutes=i),
        {
            "prediction": int(p_default >= 0.5),
            "probabilities": {"0": 1 - p_default, "1": p_default},
        },
        {"balance": 800.0 + i, "student": "No"},
        {"customer_id": i},
    )
    margin = abs(1 - 2 * p_default)
    review = {"needs_review": margin_flag, "margin": margin, "min_margin": 0.2}
    if margin_flag:
        review["reasons"] = ["low_margin"]
    return event.with_changes(data={**event.data, "review": review})


def outlier_review(i: int, window_no: int = 0) -> Event:
    """The drift consumer's `review.v1` for an outlier row."""
    data = {
        "prediction_id": f"c-{i}",
        "model": MODEL,
        "version": "1",
        "reasons": ["outlier"],
        "window_no": window_no,
        "threshold": 0.61,
        "flagged_at": iso(T0 + timedelta(hours=2)),
    }
    return Event.create("review.v1", data, source="tests/drift", subject=MODEL, partitionkey=MODEL)


def test_flagged_predictions_queue_and_decisions_give_the_override_rate(
    client: TestClient, event_log: EventLog, publisher: Publisher, consumer: FeedbackConsumer
) -> None:
    served = [
        credit_prediction(0, 0.45, True),  # answered 0
        credit_prediction(1, 0.55, True),  # answered 1
        credit_prediction(2, 0.41, True),  # answered 0
        credit_prediction(3, 0.02, False),
        credit_prediction(4, 0.01, False),
    ]
    append(event_log, PREDICTIONS, [*served, outlier_review(3), outlier_review(0)])
    consumer.drain()

    queue = client.get("/v1/reviews", params={"model": MODEL}).json()
    assert [r["prediction_id"] for r in queue["reviews"]] == ["c-0", "c-1", "c-2", "c-3"]
    first = queue["reviews"][0]
    assert first["reasons"] == ["low_margin", "outlier"] and first["margin"] == pytest.approx(0.1)
    assert first["prediction"] == 0 and first["inputs"]["balance"] == 800.0
    assert first["status"] == "pending" and first["decision"] is None
    assert queue["reviews"][3]["reasons"] == ["outlier"] and queue["reviews"][3]["margin"] is None
    assert queue["summary"] == [
        {"model": MODEL, "version": "1", "flagged": 4, "pending": 4, "decided": 0,
         "overridden": 0, "override_rate": None}
    ]  # fmt: skip

    # A reviewer overrides c-0 (the customer defaulted) and confirms c-1 and c-3.
    for pid, label in (("c-0", 1), ("c-1", 1), ("c-3", "0")):  # "0" is the class 0
        answer = client.post(
            f"/v1/reviews/{pid}/decision", json={"outcome": label, "note": "checked"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted"
    unflagged = client.post("/v1/reviews/c-4/decision", json={"outcome": 1})
    assert unflagged.status_code == 404 and "not in the review queue" in unflagged.json()["error"]
    for bad_label in (7, "no"):
        bad = client.post("/v1/reviews/c-2/decision", json={"outcome": bad_label})
        assert bad.status_code == 400 and "allowed values are 0, 1" in bad.json()["error"]
    extra = client.post("/v1/reviews/c-2/decision", json={"outcome": 1, "score": 3})
    assert extra.status_code == 422

    assert publisher.flush(10) == 0
    consumer.drain()
    decided = client.get("/v1/reviews", params={"status": "decided"}).json()["reviews"]
    assert {r["prediction_id"]: r["decision"]["overridden"] for r in decided} == {
        "c-0": True, "c-1": False, "c-3": False,
    }  # fmt: skip
    assert {r["decision"]["reviewer"] for r in decided} == {"anonymous"}
    assert decided[0]["decision"]["note"] == "checked"
    pending = client.get("/v1/reviews").json()
    assert [r["prediction_id"] for r in pending["reviews"]] == ["c-2"]
    assert pending["summary"][0]["override_rate"] == pytest.approx(1 / 3)

    # The decision is a human outcome: it labels the prediction for live quality.
    labelled = client.get("/v1/predictions/c-0").json()["outcome"]
    assert labelled["value"] == 1 and labelled["source"] == "human"

    assert consumer.housekeeping()["reviews"] == 1
    labels = {"model": MODEL, "version": "1"}
    registry = consumer.metrics.registry
    assert registry.get_sample_value("loopstack_review_override_rate", labels) == pytest.approx(
        1 / 3
    )
    assert registry.get_sample_value("loopstack_reviews_pending", labels) == 1
    assert registry.get_sample_value("loopstack_reviews_decided", labels) == 3


def _queue(read_model: ReadModel) -> list[dict[str, Any]]:
    page = review_page(read_model.engine, status="all", limit=100)
    for entry in page["reviews"]:
        if entry["decision"]:
            entry["decision"].pop("event_id")
    return page["reviews"]


def test_the_queue_is_the_same_whatever_order_the_events_arrive_in(
    read_model: ReadModel,
) -> None:
    decision = outcome_event(
        1, pid="c-3", model=MODEL, source="human", observed_at=T0 + timedelta(hours=3)
    )
    events = [
        credit_prediction(0, 0.45, True),
        credit_prediction(3, 0.02, False),
        outlier_review(3),
        outlier_review(0),
        outcome_event(0, pid="c-0", model=MODEL, source="system"),  # not a decision
        decision,
    ]
    results = []
    for order in itertools.islice(itertools.permutations(events), 0, None, 37):
        read_model.reset("feedback")
        projector = FeedbackProjector(API_CATALOG)
        for event in order:
            with read_model.engine.begin() as conn:
                projector(event, conn)
        results.append(_queue(read_model))
    assert len(results) > 10
    expected = results[0]
    assert [(r["prediction_id"], r["reasons"]) for r in expected] == [
        ("c-0", ["low_margin", "outlier"]),
        ("c-3", ["outlier"]),
    ]
    assert expected[0]["decision"] is None  # a system outcome is not a review decision
    assert expected[1]["decision"]["overridden"] is True and expected[1]["prediction"] == 0
    for other in results[1:]:
        assert other == expected
