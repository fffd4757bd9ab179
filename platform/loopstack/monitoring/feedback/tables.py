"""Tables of the feedback read model (SQLAlchemy Core: the same SQL on SQLite and PostgreSQL).

They live in the consumer store's database, next to `loopstack_applied_events`, so a
handler's writes and the event's processed mark commit in one transaction. Times are naive UTC.

Segment rows of `feedback_window_metrics.segment`: `""` is the whole window, `"season=1"` one
segment value, and `"season"` the gap between the best and the worst value of that column.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "alert_state",
    "counters",
    "metadata",
    "outcomes",
    "predictions",
    "push_queue",
    "reviews",
    "series",
    "training_labels",
    "rebuilds",
    "window_failures",
    "window_metrics",
    "windows",
]

metadata = MetaData()

_MODEL = 128
_VERSION = 64
_ROUTE = 16

predictions = Table(
    "feedback_predictions",
    metadata,
    Column("prediction_id", String(128), primary_key=True),
    Column("model", String(_MODEL), nullable=False),
    Column("version", String(_VERSION), nullable=False),
    Column("route", String(_ROUTE), nullable=False),
    Column("request_time", DateTime, nullable=False),
    Column("correlation", String(128), index=True),
    Column("entity", String(512)),
    Column("status", String(8), nullable=False),
    Column("score", Float),
    Column("segments", Text, nullable=False),
    Column("document", Text, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("outcome_event_id", String(64), index=True),
    Column("outcome_value", Float),
    Column("outcome_json", Text),
    Column("outcome_source", String(8)),
    Column("observed_at", DateTime),
    Column("joined_at", DateTime),
    Column("window_no", Integer),
    Index("ix_feedback_predictions_entity", "model", "entity", "request_time"),
    Index("ix_feedback_predictions_window", "model", "version", "route", "window_no"),
    Index(
        "ix_feedback_predictions_rank", "model", "version", "route", "request_time", "prediction_id"
    ),
    Index("ix_feedback_predictions_time", "model", "request_time", "prediction_id"),
)
"""One row per prediction; the outcome columns are filled when an outcome joins it, and
`window_no` is its window among the joined rows of its version and route (see `windows`)."""

outcomes = Table(
    "feedback_outcomes",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("prediction_id", String(128), index=True),
    Column("model", String(_MODEL)),
    Column("entity", String(512)),
    Column("event_time", DateTime),
    Column("value", Float),
    Column("value_json", Text, nullable=False),
    Column("source", String(8), nullable=False),
    Column("observed_at", DateTime, nullable=False),
    Column("key", String(255)),
    Column("payload", LargeBinary, nullable=False),
    Column("matched", Boolean, nullable=False, default=False),
    Column("first_seen", DateTime, nullable=False),
    Column("deadline", DateTime, nullable=False),
    Index("ix_feedback_outcomes_pending", "matched", "deadline"),
    Index("ix_feedback_outcomes_entity", "model", "entity", "event_time"),
)
"""Every applied outcome until its join window ends (later predictions, e.g. shadows, still join
it); unmatched ones past their deadline are dead-lettered as orphans."""

counters = Table(
    "feedback_counters",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("version", String(_VERSION), primary_key=True),
    Column("route", String(_ROUTE), primary_key=True),
    Column("joined", Integer, nullable=False),
)
"""Joined predictions per model version and route (locked while a row joins)."""

windows = Table(
    "feedback_windows",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("version", String(_VERSION), primary_key=True),
    Column("route", String(_ROUTE), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("start_time", DateTime, nullable=False),
    Column("end_time", DateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("closed_at", DateTime, nullable=False),
    Column("evaluated", Boolean, nullable=False, default=False),
    Column("dirty", Boolean, nullable=False, default=True),
    Index("ix_feedback_windows_evaluated", "evaluated"),
    Index("ix_feedback_windows_dirty", "dirty"),
)
"""Closed count-based windows (start/end: request times of their first and last prediction);
`dirty` ones wait for their metrics to be (re)computed."""

window_metrics = Table(
    "feedback_window_metrics",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("version", String(_VERSION), primary_key=True),
    Column("route", String(_ROUTE), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("segment", String(255), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("value", Float),
)
"""Metric values of closed windows: NULL where a metric is undefined (AUC of one class)."""

window_failures = Table(
    "feedback_window_failures",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("version", String(_VERSION), primary_key=True),
    Column("route", String(_ROUTE), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("failed_at", DateTime, nullable=False),
)
"""Closed windows whose metrics could not be computed, with why (no metrics rows then); a
window's row goes when a later recomputation succeeds."""

rebuilds = Table(
    "feedback_rebuilds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime, nullable=False),
)
"""A rebuild in progress (one row from the reset to the end): quality reads answer 503."""

alert_state = Table(
    "feedback_alert_state",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("version", String(_VERSION), primary_key=True),
    Column("route", String(_ROUTE), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("bad", Integer, nullable=False),
    Column("good", Integer, nullable=False),
    Column("last_window", Integer, nullable=False),
)
"""Degraded/ok state per version, route and alerted metric, with the current streaks."""

series = Table(
    "feedback_series",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("entity", String(512), primary_key=True),
    Column("hour", DateTime, primary_key=True),
    Column("value", Float, nullable=False),
    Column("source", String(8), nullable=False),
    Column("observed_at", DateTime, nullable=False),
    Column("event_id", String(64), nullable=False),
)
"""Observed target per entity and hour, for models whose lag features outcomes refresh."""

push_queue = Table(
    "feedback_push_queue",
    metadata,
    Column("model", String(_MODEL), primary_key=True),
    Column("entity", String(512), primary_key=True),
    Column("hour", DateTime, primary_key=True),
)
"""Lag-feature rows (for hour + 1h) still to push to the online store."""

training_labels = Table(
    "feedback_training_labels",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("model", String(_MODEL), nullable=False),
    Column("prediction_id", String(128), nullable=False),
    Column("event_time", DateTime, nullable=False),
    Column("origin", String(8), nullable=False),
    Column("row", Text, nullable=False),
    Column("written_at", DateTime, nullable=False),
    Column("exported", Boolean, nullable=False, default=False),
    Index("ix_feedback_training_labels_pending", "exported", "model", "seq"),
)
"""Training label rows: one each time a request's winning outcome changes (written with the
event's processed mark), until `labels.LabelExporter` appends them to the offline store.
`row` is JSON: the join key, the request fields and the target; `event_time` the request time."""

reviews = Table(
    "feedback_reviews",
    metadata,
    Column("prediction_id", String(128), primary_key=True),
    Column("model", String(_MODEL), nullable=False),
    Column("version", String(_VERSION), nullable=False),
    Column("route", String(_ROUTE)),
    Column("reasons", String(64), nullable=False),
    Column("margin", Float),
    Column("predicted_json", Text),
    Column("predicted_value", Float),
    Column("flagged_at", DateTime, nullable=False),
    Column("decision_event_id", String(64)),
    Column("decision_json", Text),
    Column("decision_value", Float),
    Column("reviewer", String(255)),
    Column("note", Text),
    Column("decided_at", DateTime),
    Column("overridden", Boolean),
    Index("ix_feedback_reviews_queue", "model", "decided_at", "flagged_at"),
)
"""The review queue: predictions flagged `needs_review` (low class-probability margin at
serving time, or an outlier row of a drift window) and the reviewer's decision, a human
outcome; `overridden` when the decision differs from what the model answered."""
