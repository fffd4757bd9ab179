"""The decision history: every `decision.v1` as a row, and the model-ops metrics derived from it.

Model-ops metrics (per model, over the history's model time):
- deployment frequency: promotions per week;
- lead time: from the trigger that started a retraining to the promotion of its version;
- change-failure rate: rolled-back rollouts / finished rollouts (promoted + rolled back);
- time to recover: from the first degradation (drift or quality trigger, fired or suppressed)
  after a promotion to the next promotion;
- retraining cadence: mean time between retraining starts.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from loopstack.core.events.envelope import Event
from loopstack.loop.store import naive
from loopstack.loop.tables import decisions

__all__ = ["DecisionHistory", "ops_metrics", "record_decision"]

ROLLOUT_KINDS = ("promoted", "rolled_back")
DEGRADATION_SOURCES = ("drift", "quality")


def _parse(value: str) -> datetime:
    return naive(datetime.fromisoformat(value.replace("Z", "+00:00")))


def record_decision(event: Event, conn: Connection) -> None:
    """Store one `decision.v1` event (the consumer's handler: runs once per event)."""
    data = event.data
    at = _parse(data["at"]) if data.get("at") else naive(event.time)
    conn.execute(
        insert(decisions).values(
            event_id=event.id,
            model=data["model"],
            kind=data["kind"],
            version=data.get("version"),
            at=at,
            recorded_at=naive(event.time),
            reason=data["reason"],
            document=json.dumps(
                {**data, "event_id": event.id, "source": event.source}, default=str
            ),
        )
    )


def _row(row: Any) -> dict[str, Any]:
    document = json.loads(row["document"])
    return {
        "event_id": row["event_id"],
        "model": row["model"],
        "kind": row["kind"],
        "version": row["version"],
        "at": row["at"].replace(tzinfo=UTC).isoformat(),
        "recorded_at": row["recorded_at"].replace(tzinfo=UTC).isoformat(),
        "reason": row["reason"],
        "evidence": document.get("evidence", {}),
        "traffic": document.get("traffic"),
        "pipeline_run_id": document.get("pipeline_run_id"),
        "source": document.get("source"),
    }


class DecisionHistory:
    """Queries over the decision rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def decisions(
        self, model: str, kinds: Sequence[str] = (), limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The model's decisions, oldest first (the newest `limit`)."""
        query = select(decisions).where(decisions.c.model == model)
        if kinds:
            query = query.where(decisions.c.kind.in_(list(kinds)))
        query = query.order_by(decisions.c.at.desc(), decisions.c.recorded_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query).mappings()]
        return rows[::-1]

    def latest_at(self, model: str) -> datetime | None:
        """Model time of the model's latest decision."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(decisions.c.at)).where(decisions.c.model == model)
            ).scalar()

    def models(self) -> list[str]:
        """Models with at least one decision."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(decisions.c.model).distinct()).scalars())


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def ops_metrics(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Model-ops metrics recomputed from decisions (times in seconds, model time)."""
    times = [datetime.fromisoformat(d["at"]) for d in history]
    span_days = (max(times) - min(times)).total_seconds() / 86400 if times else 0.0
    promotions = [
        d for d in history if d["kind"] == "promoted" and d["source"] != "loopstack/pipeline"
    ]
    rollbacks = [d for d in history if d["kind"] == "rolled_back"]
    starts = [d for d in history if d["kind"] == "pipeline_started"]
    fired_by_run = {
        d["pipeline_run_id"]: d
        for d in history
        if d["kind"] == "trigger_fired" and d["pipeline_run_id"]
    }
    run_of_version = {d["version"]: d["evidence"].get("pipeline_run_id") for d in history
                      if d["kind"] in ("gate_passed", "gate_failed")}  # fmt: skip
    lead_times = []
    for promo in promotions:
        trigger = fired_by_run.get(run_of_version.get(promo["version"]))
        if trigger is not None:
            lead_times.append(_seconds(trigger["at"], promo["at"]))
    recoveries, degraded_at = [], None
    for d in history:
        source = d["evidence"].get("trigger_source")
        if d["kind"] in ("trigger_fired", "trigger_suppressed") and source in DEGRADATION_SOURCES:
            degraded_at = degraded_at or d["at"]
        elif d["kind"] == "promoted" and degraded_at is not None:
            recoveries.append(_seconds(degraded_at, d["at"]))
            degraded_at = None
    start_times = sorted(datetime.fromisoformat(d["at"]) for d in starts)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(start_times)]
    finished = len(promotions) + len(rollbacks)
    return {
        "decisions": len(history),
        "retrainings": len(starts),
        "promotions": len(promotions),
        "rollbacks": len(rollbacks),
        "deployment_frequency_per_week": len(promotions) / (span_days / 7) if span_days else None,
        "lead_time_s": _mean(lead_times),
        "change_failure_rate": len(rollbacks) / finished if finished else None,
        "time_to_recover_s": _mean(recoveries),
        "retraining_cadence_s": _mean(gaps),
        "span_days": span_days,
    }


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
