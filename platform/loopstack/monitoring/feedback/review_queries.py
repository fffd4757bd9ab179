"""Reads of the review queue: pages of flagged predictions, and decisions per version."""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.engine import Engine, RowMapping

from loopstack.core.errors import InvalidInput
from loopstack.core.events.store import reading
from loopstack.monitoring.feedback.queries import MAX_PAGE, decode_cursor, encode_cursor
from loopstack.monitoring.feedback.records import to_iso
from loopstack.monitoring.feedback.tables import predictions, reviews

__all__ = ["ReviewStatus", "review_page", "review_summary"]

ReviewStatus = Literal["pending", "decided", "all"]


def _entry(row: RowMapping) -> dict[str, Any]:
    document = json.loads(row["document"]) if row["document"] else {}
    decision = None
    if row["decision_event_id"] is not None:
        decision = {
            "outcome": json.loads(row["decision_json"]),
            "reviewer": row["reviewer"],
            "note": row["note"],
            "decided_at": to_iso(row["decided_at"]),
            "overridden": row["overridden"],
            "event_id": row["decision_event_id"],
        }
    return {
        "prediction_id": row["prediction_id"],
        "model": row["model"],
        "version": row["version"],
        "route": row["route"],
        "reasons": row["reasons"].split(","),
        "margin": row["margin"],
        "flagged_at": to_iso(row["flagged_at"]),
        "prediction": json.loads(row["predicted_json"]) if row["predicted_json"] else None,
        "outputs": document.get("outputs"),
        "inputs": document.get("inputs"),
        "features": (document.get("features") or {}).get("values"),
        "status": "pending" if decision is None else "decided",
        "decision": decision,
    }


def review_page(
    engine: Engine,
    *,
    model: str | None = None,
    version: str | None = None,
    status: ReviewStatus = "pending",
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Flagged predictions, oldest first (the queue's order), and the next page's cursor."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}, got {limit}")
    r = reviews.c
    query = select(reviews, predictions.c.document).outerjoin(
        predictions, predictions.c.prediction_id == r.prediction_id
    )
    if model is not None:
        query = query.where(r.model == model)
    if version is not None:
        query = query.where(r.version == version)
    if status == "pending":
        query = query.where(r.decision_event_id.is_(None))
    elif status == "decided":
        query = query.where(r.decision_event_id.is_not(None))
    if cursor:
        when, pid = decode_cursor(cursor)
        query = query.where(
            (r.flagged_at > when) | ((r.flagged_at == when) & (r.prediction_id > pid))
        )
    query = query.order_by(r.flagged_at, r.prediction_id).limit(limit + 1)
    with reading(engine) as conn:
        rows = list(conn.execute(query).mappings())
    page = rows[:limit]
    return {
        "reviews": [_entry(row) for row in page],
        "next_cursor": encode_cursor(page[-1], "flagged_at") if len(rows) > limit else None,
        "summary": review_summary(engine, model=model),
    }


def review_summary(engine: Engine, *, model: str | None = None) -> list[dict[str, Any]]:
    """Per model version: flagged, pending, decided, overridden and the override rate."""
    r = reviews.c
    decided = func.count(r.decision_event_id)
    overridden = func.count().filter(r.overridden.is_(True))
    query = select(r.model, r.version, func.count(), decided, overridden).group_by(
        r.model, r.version
    )
    if model is not None:
        query = query.where(r.model == model)
    with reading(engine) as conn:
        rows = list(conn.execute(query.order_by(r.model, r.version)))
    return [
        {
            "model": m,
            "version": v,
            "flagged": flagged,
            "pending": flagged - done,
            "decided": done,
            "overridden": over,
            "override_rate": over / done if done else None,
        }
        for m, v, flagged, done, over in rows
    ]
