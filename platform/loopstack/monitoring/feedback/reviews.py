"""The review queue in the read model: flagged predictions and the reviewers' decisions.

A prediction joins the queue when its `prediction.v1` says `review.needs_review` (the runtime's
confidence check) or a `review.v1` names it (the drift consumer's outlier detector). A human
outcome for it (`POST /v1/reviews/{id}/decision`, or any human feedback by prediction id) is
its decision; the decision is `overridden` when it differs from the model's answer. Events may
arrive in any order (a rebuild, a redelivery): each writer fills what it knows and completes
what the others left, so the queue ends the same whatever the order.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from loopstack.core.events import Event
from loopstack.monitoring.feedback.records import OutcomeRow, label_number, parse_time
from loopstack.monitoring.feedback.tables import outcomes, predictions, reviews

__all__ = ["REVIEW", "apply_review_event", "review_decision", "review_from_prediction"]

REVIEW = "review.v1"


def review_from_prediction(conn: Connection, event: Event) -> None:
    """Queue a prediction flagged at serving time, or complete an entry queued before it."""
    data = event.data
    if data.get("status") != "ok" or data.get("route") == "shadow":
        return
    pid = str(data["prediction_id"])
    flags = data.get("review") or {}
    facts = _answer(data["route"], data.get("outputs"))
    if flags.get("needs_review"):
        facts["margin"] = flags.get("margin")
        when = parse_time(data["request_time"])
        _flag(conn, pid, str(data["model"]), str(data["version"]), "low_margin", when, facts)
    elif _entry(conn, pid) is not None:
        _complete(conn, pid, facts)
    else:
        return
    _decide_if_labelled(conn, pid)


def apply_review_event(conn: Connection, event: Event) -> None:
    """Queue a prediction a `review.v1` flags after the fact (an outlier row)."""
    data = event.data
    pid = str(data["prediction_id"])
    facts: dict[str, Any] = {}
    found = conn.execute(
        select(predictions.c.route, predictions.c.document).where(
            predictions.c.prediction_id == pid
        )
    ).first()
    if found is not None:
        facts = _answer(found[0], json.loads(found[1]).get("outputs"))
    when = parse_time(data["flagged_at"])
    for reason in data["reasons"]:
        _flag(conn, pid, str(data["model"]), str(data["version"]), reason, when, facts)
    _decide_if_labelled(conn, pid)


def review_decision(conn: Connection, event: Event, outcome: OutcomeRow) -> None:
    """Record a human outcome by prediction id as the decision of its queued review."""
    if outcome.source != "human" or not outcome.prediction_id:
        return
    entry = _entry(conn, outcome.prediction_id)
    if entry is None or not outcome.beats(
        "human" if entry["decision_event_id"] else None,
        entry["decided_at"],
        entry["decision_event_id"],
    ):
        return
    data = event.data
    _decide(
        conn,
        outcome.prediction_id,
        {
            "decision_event_id": outcome.event_id,
            "decision_json": outcome.value_json,
            "decision_value": outcome.value,
            "reviewer": data.get("reviewer"),
            "note": data.get("note"),
            "decided_at": outcome.observed_at,
        },
    )


def _answer(route: str, outputs: dict[str, Any] | None) -> dict[str, Any]:
    """What the model answered, as the queue keeps it (the label as a number, to compare)."""
    predicted = (outputs or {}).get("prediction")
    return {
        "route": route,
        "predicted_json": json.dumps(predicted, default=str),
        "predicted_value": label_number(predicted),
    }


def _entry(conn: Connection, pid: str) -> RowMapping | None:
    return conn.execute(select(reviews).where(reviews.c.prediction_id == pid)).mappings().first()


def _flag(
    conn: Connection,
    pid: str,
    model: str,
    version: str,
    reason: str,
    flagged_at: datetime,
    facts: dict[str, Any],
) -> None:
    entry = _entry(conn, pid)
    if entry is None:
        conn.execute(
            insert(reviews).values(
                prediction_id=pid,
                model=model,
                version=version,
                reasons=reason,
                flagged_at=flagged_at,
                **facts,
            )
        )
        return
    reasons = ",".join(sorted({*entry["reasons"].split(","), reason}))
    first = min(entry["flagged_at"], flagged_at)
    _complete(conn, pid, {**facts, "reasons": reasons, "flagged_at": first})


def _complete(conn: Connection, pid: str, values: dict[str, Any]) -> None:
    known = {k: v for k, v in values.items() if v is not None}
    if known:
        conn.execute(update(reviews).where(reviews.c.prediction_id == pid).values(**known))
    if "predicted_value" in known:
        _decide(conn, pid, {})


def _decide_if_labelled(conn: Connection, pid: str) -> None:
    """An undecided entry takes its decision from a human outcome already joined to it."""
    entry = _entry(conn, pid)
    if entry is None or entry["decision_event_id"] is not None:
        return
    p, o = predictions.c, outcomes.c
    row = conn.execute(
        select(o.payload)
        .join(predictions, p.outcome_event_id == o.event_id)
        .where(p.prediction_id == pid, p.outcome_source == "human")
    ).first()
    if row is not None:
        event = Event.from_json(row[0])
        review_decision(conn, event, OutcomeRow.from_event(event))


def _decide(conn: Connection, pid: str, decision: dict[str, Any]) -> None:
    """Write a decision (or re-judge the stored one) and whether it overrides the model."""
    if decision:
        conn.execute(update(reviews).where(reviews.c.prediction_id == pid).values(**decision))
    entry = _entry(conn, pid)
    if entry is None or entry["decision_json"] is None:
        return
    predicted, decided = entry["predicted_value"], entry["decision_value"]
    if predicted is not None and decided is not None:
        overridden: bool | None = not math.isclose(decided, predicted, rel_tol=1e-9, abs_tol=1e-9)
    elif entry["predicted_json"] is not None:
        # Text classes (multiclass weather, "no"/"yes"): the decision names a class or not.
        overridden = json.loads(entry["decision_json"]) != json.loads(entry["predicted_json"])
    else:
        overridden = None
    conn.execute(
        update(reviews).where(reviews.c.prediction_id == pid).values(overridden=overridden)
    )
