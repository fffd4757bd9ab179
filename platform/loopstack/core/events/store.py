"""The consumer's own store (SQLAlchemy: SQLite embedded, PostgreSQL at scale, same code).

It remembers which event ids a consumer group applied, in the same transaction as the
handler's state change, which is what makes a redelivered event a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["ConsumerStore", "processed_events"]

metadata = MetaData()

processed_events = Table(
    "loopstack_processed_events",
    metadata,
    Column("consumer_group", String(255), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
)
"""One row per (group, event id) applied."""

# Ids are random (UUIDv4), so each batch dirties pages all over the id index; a larger WAL
# before auto-checkpoint writes each such page back once per checkpoint instead of once per
# two or three batches (commits are as durable as before: WAL, synchronous=NORMAL).
_SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
_SQLITE_CACHE_KIB = 65_536


_IN_CHUNK = 500
"""Ids per `IN (...)` query: well under SQLite's and PostgreSQL's bound-parameter limits."""
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _placeholder(conn: Connection) -> str | None:
    """The driver's positional placeholder, or None to go through SQLAlchemy Core."""
    return _PLACEHOLDERS.get(conn.dialect.paramstyle)


def _dialect_insert(conn: Connection) -> Callable[[Table], Any]:
    """The dialect's `insert` with `on_conflict_do_nothing` (SQLite and PostgreSQL have one)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    if conn.dialect.name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"ConsumerStore.claim: no ON CONFLICT insert for {conn.dialect.name}")


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN, so transactions are real and savepoints work.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={_SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        dbapi_conn.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE: take the write lock up front, so two processes never deadlock on upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class ConsumerStore:
    """A SQLAlchemy database holding handler state and the processed-event ids."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, busy_timeout_ms)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def processed(self, conn: Connection, group: str, event_ids: Sequence[str]) -> set[str]:
        """Which of `event_ids` the group applied already (one query per 500 ids)."""
        mark = _placeholder(conn)
        found: set[str] = set()
        for start in range(0, len(event_ids), _IN_CHUNK):
            chunk = list(event_ids[start : start + _IN_CHUNK])
            if mark is None:
                rows = conn.execute(
                    select(processed_events.c.event_id).where(
                        processed_events.c.consumer_group == group,
                        processed_events.c.event_id.in_(chunk),
                    )
                )
            else:
                rows = conn.exec_driver_sql(
                    f"SELECT event_id FROM {processed_events.name} WHERE consumer_group = {mark} "
                    f"AND event_id IN ({', '.join([mark] * len(chunk))})",
                    (group, *chunk),
                )
            found.update(r[0] for r in rows)
        return found

    def claim(self, conn: Connection, group: str, event_ids: Sequence[str]) -> set[str]:
        """Record as applied those of `event_ids` the group had not applied; return them.

        One `INSERT ... ON CONFLICT DO NOTHING RETURNING` per 500 ids does the dedupe check and
        the processed mark at once (in the caller's transaction, so a rollback un-claims them).
        An id given twice is claimed once. On PostgreSQL a concurrent transaction claiming the
        same id makes this one wait for it and then see the id as taken; the ids go in sorted,
        so two members claiming overlapping batches take the row locks in one order.
        """
        unique = sorted(set(event_ids))
        now = datetime.now(UTC)
        mark = _placeholder(conn)
        if mark is not None:
            # The driver's own statement skips SQLAlchemy's per-row parameter processing (which
            # costs more than the insert), so the timestamp goes through the column type once
            # here: it is then stored exactly as the Core path stores it (`prune` compares it).
            column = processed_events.c.processed_at
            process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            stamp = process(now) if process is not None else now
        claimed: set[str] = set()
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            if mark is None:
                insert = _dialect_insert(conn)(processed_events)
                rows = conn.execute(
                    insert.values(
                        [
                            {"consumer_group": group, "event_id": i, "processed_at": now}
                            for i in chunk
                        ]
                    )
                    .on_conflict_do_nothing()
                    .returning(processed_events.c.event_id)
                )
            else:
                params: list[Any] = []
                for i in chunk:
                    params += (group, i, stamp)
                row = f"({mark}, {mark}, {mark})"
                rows = conn.exec_driver_sql(
                    f"INSERT INTO {processed_events.name} (consumer_group, event_id, "
                    f"processed_at) VALUES {', '.join([row] * len(chunk))} "
                    "ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id",
                    tuple(params),
                )
            claimed.update(r[0] for r in rows)
        return claimed

    def is_processed(self, group: str, event_id: str) -> bool:
        """Whether the group applied this event id."""
        with self.engine.connect() as conn:
            return bool(self.processed(conn, group, [event_id]))

    def prune(self, older_than: timedelta) -> int:
        """Forget processed ids older than `older_than` (keep it above retention + replays)."""
        cutoff = datetime.now(UTC) - older_than
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(processed_events).where(processed_events.c.processed_at < cutoff)
            )
        return int(result.rowcount or 0)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()
