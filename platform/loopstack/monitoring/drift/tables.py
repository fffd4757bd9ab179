"""Tables of the drift consumer's store: open windows with their rows, and reported results.

Times are naive UTC. Window membership (`drift_rows`), the window's state (`drift_windows`) and the processed event
ids commit in one transaction, so a restarted consumer resumes each window where the log left
it; a window moves `open → closed → reported` once (the report is a conditional update).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["drift_failures", "drift_results", "drift_rows", "drift_windows", "metadata"]

metadata = MetaData()

drift_windows = Table(
    "loopstack_drift_windows",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("start_time", DateTime(), nullable=False),
    Column("end_time", DateTime(), nullable=False),
    Column("size", Integer, nullable=False),
    Column("opened_at", DateTime(), nullable=False),
    Column("status", String(32)),
    Column("drifted", Boolean),
    Column("reported_at", DateTime()),
)
"""One row per window; `state` is `open`, `closed` (waiting to be scored), `reported` or
`failed` (given up: the reason is in `drift_failures`)."""

drift_rows = Table(
    "loopstack_drift_rows",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("row_no", Integer, primary_key=True),
    Column("data", Text, nullable=False),
)
"""The rows of windows not reported yet (inputs and prediction as JSON); deleted on report."""

drift_results = Table(
    "loopstack_drift_results",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("feature", String(255), primary_key=True),
    Column("test", String(16)),
    Column("statistic", Float),
    Column("effect", Float),
    Column("p_value", Float),
    Column("threshold", Float),
    Column("significant", Boolean, nullable=False),
    Column("drifted", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("window_start", DateTime(), nullable=False),
    Column("window_end", DateTime(), nullable=False),
    Column("sample_size", Integer, nullable=False),
    Column("reported_at", DateTime(), nullable=False, index=True),
)
"""The read table of `GET /v1/models/{name}/drift`: one row per reported window and feature
(kind `feature` or `prediction`; kind `outlier` with feature `outlier_fraction`)."""

drift_failures = Table(
    "loopstack_drift_failures",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("window_no", Integer, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("failed_at", DateTime(), nullable=False),
)
"""Failed attempts at scoring a window, counted (a table of its own: stores written before it
existed gain it with `create_all`); the window is given up at `drift.max_score_attempts`."""
