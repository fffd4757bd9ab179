"""The decision history: every `decision.v1` as a row, and the model-ops metrics derived from it.

Model-ops metrics are computed on a stated window of model time: the model's current timeline
(`loop/clock.py`: decisions recorded since its clock last rewound, with model times from that
rewind up to the clock), so a replay of past days after live requests never mixes the two
clocks. Rates need a window of at least `MIN_SPAN` and are None (with the reason in `notes`)
on a shorter one.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from loopstack.core.events.envelope import Event
from loopstack.core.events.store import reading
from loopstack.loop.clock import REWIND, Timeline
from loopstack.loop.store import naive
from loopstack.loop.tables import decisions

__all__ = ["MIN_SPAN", "DecisionHistory", "OpsWindow", "ops_metrics", "record_decision"]

ROLLOUT_KINDS = ("promoted", "rolled_back")
DEGRADATION_SOURCES = ("drift", "quality")
MIN_SPAN = timedelta(days=1)
"""The shortest window a rate (deployments per week) is computed on."""


@dataclass(frozen=True)
class OpsWindow:
    """The decisions model-ops metrics are computed on (None: unbounded)."""

    start: datetime | None = None
    """Earliest model time (where the model's clock last rewound to)."""
    end: datetime | None = None
    """Model time now (the model's clock): the window ends here, or at its latest decision."""
    recorded_since: datetime | None = None
    """Earliest wall-clock time a decision was recorded (the clock's last rewind)."""

    @classmethod
    def of(cls, timeline: Timeline) -> OpsWindow:
        """The current timeline of a model's clock."""
        return cls(timeline.started_at, timeline.now, timeline.rewound_at)

    def holds(self, decision: dict[str, Any]) -> bool:
        """Whether a decision row is in the window (a small slack for disorder at the end)."""
        at = naive(datetime.fromisoformat(decision["at"]))
        if self.start is not None and at < self.start:
            return False
        # Only a rewound timeline has decisions of another clock after its end (the live
        # ones before a replay); live, a person's decision may come after the last request.
        if self.start is not None and self.end is not None and at > self.end + REWIND:
            return False
        recorded = decision.get("recorded_at")
        return (
            self.recorded_since is None
            or recorded is None
            or naive(datetime.fromisoformat(recorded)) >= self.recorded_since
        )


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
        """The model's decisions in the order they were recorded, oldest first (the newest
        `limit`): after a replay rewound the model's clock, its decisions follow the live ones."""
        query = select(decisions).where(decisions.c.model == model)
        if kinds:
            query = query.where(decisions.c.kind.in_(list(kinds)))
        query = query.order_by(decisions.c.recorded_at.desc(), decisions.c.at.desc()).limit(limit)
        with reading(self.engine) as conn:
            rows = [_row(r) for r in conn.execute(query).mappings()]
        return rows[::-1]

    def latest_at(self, model: str) -> datetime | None:
        """Model time of the model's latest decision."""
        with reading(self.engine) as conn:
            return conn.execute(
                select(func.max(decisions.c.at)).where(decisions.c.model == model)
            ).scalar()

    def models(self) -> list[str]:
        """Models with at least one decision."""
        with reading(self.engine) as conn:
            return sorted(conn.execute(select(decisions.c.model).distinct()).scalars())


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def ops_metrics(
    history: Sequence[dict[str, Any]], window: OpsWindow | None = None
) -> dict[str, Any]:
    """Model-ops metrics of the decisions in `window` (times in seconds, model time).

    `window` states the span (`window.start` .. `window.end`, else the first and last decision)
    and `notes` says why a metric is None."""
    window = window or OpsWindow()
    all_rows = len(history)
    history = [d for d in history if window.holds(d)]
    times = [naive(datetime.fromisoformat(d["at"])) for d in history]
    start = window.start or (min(times) if times else None)
    end = max([t for t in (window.end, *times) if t is not None], default=None)
    span = (end - start) if start is not None and end is not None and end > start else timedelta()
    span_days = span.total_seconds() / 86400
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
    notes: dict[str, str] = {}
    frequency = None
    if span >= MIN_SPAN:
        frequency = len(promotions) / (span_days / 7)
    else:
        notes["deployment_frequency_per_week"] = (
            f"n/a: the window spans {span.total_seconds() / 3600:.1f} h of model time; "
            f"a rate needs at least {MIN_SPAN.total_seconds() / 3600:.0f} h"
        )
    for key, values, why in (
        ("lead_time_s", lead_times, "no promoted version whose trigger is in the window"),
        ("time_to_recover_s", recoveries, "no degradation followed by a promotion in the window"),
        ("retraining_cadence_s", gaps, "fewer than two retraining starts in the window"),
    ):
        if not _forward(values):
            notes[key] = f"n/a: {why}"
    if not finished:
        notes["change_failure_rate"] = "n/a: no rollout finished in the window"
    return {
        "decisions": len(history),
        "retrainings": len(starts),
        "promotions": len(promotions),
        "rollbacks": len(rollbacks),
        "deployment_frequency_per_week": frequency,
        "lead_time_s": _mean(_forward(lead_times)),
        "change_failure_rate": len(rollbacks) / finished if finished else None,
        "time_to_recover_s": _mean(_forward(recoveries)),
        "retraining_cadence_s": _mean(_forward(gaps)),
        "span_days": span_days,
        "window": {
            "start": _iso(start),
            "end": _iso(end),
            "span_days": span_days,
            "decisions": len(history),
            "excluded": all_rows - len(history),
            "recorded_since": _iso(window.recorded_since),
        },
        "notes": notes,
    }


def _forward(values: list[float]) -> list[float]:
    # A duration is never negative on one timeline; a negative one mixes clocks: left out.
    return [v for v in values if v >= 0]


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.replace(tzinfo=UTC).isoformat()


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
