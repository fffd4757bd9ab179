"""The audit read model's table (SQLAlchemy Core: SQLite embedded, PostgreSQL at scale).

Rows are only ever inserted: there is no update or delete path in the code.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, Text

__all__ = ["audit_records", "metadata", "naive_utc"]


def naive_utc(when: datetime) -> datetime:
    """A naive UTC time, as the table stores it."""
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


metadata = MetaData()

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("at", DateTime, nullable=False),  # wall-clock UTC, naive
    Column("actor", String(256), nullable=False),
    Column("action", String(128), nullable=False),
    Column("target", String(512), nullable=False),
    Column("model", String(128)),
    Column("outcome", String(16), nullable=False),
    Column("document", Text, nullable=False),  # the whole record, JSON
    Index("ix_audit_at", "at"),
    Index("ix_audit_model_at", "model", "at"),
    Index("ix_audit_actor_at", "actor", "at"),
)
