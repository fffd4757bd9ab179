"""Tables of the loop controller (SQLAlchemy Core: SQLite embedded, PostgreSQL at scale).

Times are naive UTC *model time*: the model's own clock (`loop/clock.py`, the event time of its
latest traffic). Live, that is the wall clock; in a replay (the demo) it is the simulated clock,
so cooldowns, schedules and lead times mean the same in both.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

__all__ = ["clocks", "decisions", "failures", "metadata", "model_state", "pending_triggers"]

metadata = MetaData()

model_state = Table(
    "loop_models",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("phase", String(16), nullable=False),  # idle, training, shadow or canary
    Column("run_id", String(128)),
    Column("trigger_id", String(64)),
    Column("champion", String(64)),
    Column("challenger", String(64)),
    Column("step", Integer, nullable=False, default=0),
    Column("phase_started_at", DateTime),
    Column("last_fired_at", DateTime),
    Column("schedule_checked_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
)
"""One row per model: where its loop stands (one retraining or rollout in flight at most)."""

pending_triggers = Table(
    "loop_pending_triggers",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("source", String(16), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Index("ix_loop_pending_model", "model", "at"),
)
"""Drift and quality alerts applied by the consumer, waiting for the controller's next tick."""

decisions = Table(
    "loop_decisions",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", String(64)),
    Column("at", DateTime, nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("document", Text, nullable=False),
    Index("ix_loop_decisions_model", "model", "at", "event_id"),
)
"""Every `decision.v1` event (the history read model); `document` is the event's data."""

clocks = Table(
    "loop_clocks",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("rewound_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
)
"""One clock per model: model time now, and the model time and wall time of its last rewind."""

failures = Table(
    "loop_failures",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("since", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
"""Models the controller cannot advance (a broken spec, a failing tick), with the latest reason;
a row is removed when the model's next tick succeeds."""
