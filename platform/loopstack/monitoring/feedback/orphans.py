"""Orphans: outcomes whose join window ended without a prediction go to `outcomes.dlq`.

Each dead letter carries the original event (same id), the reason `orphan` and a message saying
what it waited for. Its processed mark is removed in the same transaction, so re-driving it
(`loopstack events redrive outcomes`) applies it again once its prediction is in the log. Matched
outcomes past their deadline are forgotten (later predictions can no longer join them).

The dead letters are appended before the transaction commits: a crash in between sends an
orphan to the DLQ twice (same event id), never zero times.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import cast

from sqlalchemy import delete, select

from loopstack.core.events import DeadLetter, Event, EventLog, EventMetrics
from loopstack.core.events.deadletter import Reason
from loopstack.core.events.schema import full_type
from loopstack.core.events.topics import OUTCOMES
from loopstack.monitoring.feedback.errors import OrphanOutcome
from loopstack.monitoring.feedback.records import OutcomeRow, to_iso
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import outcomes

__all__ = ["ORPHAN", "sweep_orphans"]

log = logging.getLogger(__name__)

ORPHAN = cast(Reason, "orphan")
"""Dead-letter reason of an outcome that never met its prediction."""


def _letter(row: dict[str, object], group: str, now: datetime) -> DeadLetter:
    outcome = OutcomeRow(
        event_id=str(row["event_id"]),
        prediction_id=cast(str | None, row["prediction_id"]),
        model=cast(str | None, row["model"]),
        entity=cast(str | None, row["entity"]),
        event_time=cast(datetime | None, row["event_time"]),
        value=cast(float | None, row["value"]),
        value_json=str(row["value_json"]),
        source=str(row["source"]),
        observed_at=cast(datetime, row["observed_at"]),
    )
    first_seen = cast(datetime, row["first_seen"])
    deadline = cast(datetime, row["deadline"])
    error = OrphanOutcome(outcome.key, (deadline - first_seen).total_seconds())
    return DeadLetter(
        reason=ORPHAN,
        error=f"OrphanOutcome: {error}",
        topic=OUTCOMES,
        partition=-1,  # the handler never sees the record's position; the payload is the event
        offset=-1,
        key=cast(str | None, row["key"]),
        group=group,
        attempts=1,
        failed_at=to_iso(now) or "",
        payload=bytes(cast(bytes, row["payload"])),
        event_id=outcome.event_id,
        event_type=full_type("outcome.v1"),
    )


def sweep_orphans(
    read_model: ReadModel,
    log_: EventLog,
    group: str,
    now: datetime,
    *,
    limit: int = 1000,
    metrics: EventMetrics | None = None,
) -> int:
    """Dead-letter unmatched outcomes whose deadline passed; return how many."""
    o = outcomes.c
    with read_model.engine.begin() as conn:
        expired = [
            dict(r)
            for r in conn.execute(
                select(outcomes)
                .where(o.deadline < now)
                .order_by(o.deadline, o.event_id)
                .limit(limit)
            ).mappings()
        ]
        if not expired:
            return 0
        orphans = [r for r in expired if not r["matched"]]
        if orphans:
            letters = [_letter(r, group, now) for r in orphans]
            log_.append([letter.to_message() for letter in letters])
            read_model.store.unclaim(
                conn, group, [Event.from_json(bytes(r["payload"])) for r in orphans]
            )
            if metrics is not None:
                metrics.dead_lettered.labels(OUTCOMES, group, ORPHAN).inc(len(orphans))
            for letter in letters:
                log.warning("feedback: dead-lettered %s (%s)", letter.event_id, letter.error)
        conn.execute(delete(outcomes).where(o.event_id.in_([r["event_id"] for r in expired])))
    return len(orphans)
