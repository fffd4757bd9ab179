"""The consumer's own store (SQLAlchemy: SQLite embedded, PostgreSQL at scale, same code).

It remembers which events a consumer group applied, in the same transaction as the handler's
state change, which is what makes a redelivered event a no-op.

An event is keyed by its time and id. Every copy of an event (a redelivery, an outbox resend,
a replay) carries the same `time`, so the key is as unique as the id; and because events reach
a consumer roughly in time order, new keys land at the end of the index instead of at random
places in it (a random UUID key rewrote about one index page per event, which cost more than
all the rest of applying it).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    inspect,
    select,
    tuple_,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

from loopstack.core.events.envelope import Event

__all__ = ["ConsumerStore", "EventKey", "event_key", "processed_events", "reading"]

metadata = MetaData()

processed_events = Table(
    "loopstack_applied_events",
    metadata,
    Column("consumer_group", String(255), primary_key=True),
    Column("event_time_us", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
)
"""One row per (group, event) applied; events are keyed by (time in µs since the epoch, id)."""

_LEGACY_TABLE = "loopstack_processed_events"
"""Before events were keyed by time: (group, id) rows, still honoured until pruned."""

EventKey = tuple[int, str]
"""(event time in microseconds since the epoch, event id)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def event_key(event: Event) -> EventKey:
    """The store's key of an event: exact, so every copy of it has the same key."""
    return (event.time - _EPOCH) // _MICROSECOND, event.id


# More WAL before an auto-checkpoint: each page a batch dirties is written back once per
# checkpoint instead of once per few batches (commits are as durable as before: WAL,
# synchronous=NORMAL).
_SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
_SQLITE_CACHE_KIB = 65_536


_IN_CHUNK = 500
"""Keys per statement: well under SQLite's and PostgreSQL's bound-parameter limits."""


def _key_chunks(events: Iterable[Event]) -> Iterator[list[EventKey]]:
    """The events' distinct keys, sorted (one lock order on PostgreSQL), a statement's worth at
    a time."""
    keys = sorted({event_key(e) for e in events})
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


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


_READ_BUSY_TIMEOUT_MS = 2_000
"""How long a reader waits on a lock. In WAL mode readers never wait for writers; this only
covers the rare moments a reader must (WAL recovery after a crash), so an API read fails in
seconds instead of queueing behind a consumer's 30 s writer timeout."""

_READERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
"""A SQLite store's writer engine -> its reader engine (see `reading`)."""


def reading(engine: Engine) -> AbstractContextManager[Connection]:
    """A connection for reads only, in a deferred (snapshot) transaction.

    On SQLite the writer engine begins every transaction with `BEGIN IMMEDIATE` (the write lock,
    taken up front), so a read through it would queue behind a consumer applying a large batch.
    This connection comes from the store's reader engine instead: plain `BEGIN` (a WAL snapshot,
    no lock that writers hold), `query_only`, a short busy timeout. Elsewhere (PostgreSQL, an
    engine no `ConsumerStore` made) it is the engine's own connection: reads never block there.
    """
    return _READERS.get(engine, engine).connect()


def _sqlite_on_connect(engine: Engine, pragmas: Sequence[str]) -> None:
    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN, so transactions are real and savepoints work.
        dbapi_conn.isolation_level = None
        for pragma in pragmas:
            dbapi_conn.execute(f"PRAGMA {pragma}")


def _sqlite_reader(url: str) -> Engine:
    """Deferred transactions that cannot write (see `reading`)."""
    engine = create_engine(url, connect_args={"timeout": _READ_BUSY_TIMEOUT_MS / 1000})
    # SQLite's default page cache: a pool of readers must not hold the writer's 64 MiB each.
    _sqlite_on_connect(engine, [f"busy_timeout={_READ_BUSY_TIMEOUT_MS}", "query_only=ON"])

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Deferred: a snapshot of the last commit, taken at the first read, never a write lock.
        conn.exec_driver_sql("BEGIN")

    return engine


def _in_memory(url: str) -> bool:
    """An in-memory SQLite database: a second engine would open another, empty, database."""
    return (
        url in ("sqlite://", "sqlite:///", "sqlite+pysqlite://")
        or ":memory:" in url
        or ("mode=memory" in url)
    )


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    _sqlite_on_connect(
        engine,
        [
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={busy_timeout_ms}",
            f"wal_autocheckpoint={_SQLITE_WAL_AUTOCHECKPOINT_PAGES}",
            f"cache_size=-{_SQLITE_CACHE_KIB}",
        ],
    )

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE: take the write lock up front, so two processes never deadlock on upgrade.
        # Reads go through `reading` instead, which never takes it.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class ConsumerStore:
    """A SQLAlchemy database holding handler state and the applied events' keys."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.reader: Engine | None = None
        """The SQLite file's reader engine (see `reading`); None elsewhere."""
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, busy_timeout_ms)
        else:
            # A PostgreSQL that does not answer fails a connection in 5 s, not the OS's minutes.
            waits = {"connect_timeout": 5} if url.startswith("postgresql") else {}
            self.engine = create_engine(url, pool_pre_ping=True, connect_args=waits)
        metadata.create_all(self.engine)
        if url.startswith("sqlite") and not _in_memory(url):
            # After create_all: the file exists and is in WAL mode before any reader opens it.
            self.reader = _READERS[self.engine] = _sqlite_reader(url)
        self._legacy = (
            Table(_LEGACY_TABLE, MetaData(), autoload_with=self.engine)
            if inspect(self.engine).has_table(_LEGACY_TABLE)
            else None
        )

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def read(self) -> AbstractContextManager[Connection]:
        """A connection for reads only, which never waits for a writer (see `reading`)."""
        return reading(self.engine)

    def processed(self, conn: Connection, group: str, events: Sequence[Event]) -> set[str]:
        """The ids of those `events` the group applied already."""
        c = processed_events.c
        found: set[str] = set()
        for chunk in _key_chunks(events):
            rows = conn.execute(
                select(c.event_id).where(
                    c.consumer_group == group, tuple_(c.event_time_us, c.event_id).in_(chunk)
                )
            )
            found.update(r[0] for r in rows)
        return found | self._legacy_applied(conn, group, sorted({e.id for e in events}))

    def claim(self, conn: Connection, group: str, events: Sequence[Event]) -> set[str]:
        """Record as applied those of `events` the group had not applied; return their ids.

        One `INSERT ... ON CONFLICT DO NOTHING RETURNING` per 500 events does the dedupe check
        and the mark at once (in the caller's transaction, so a rollback un-claims them). Copies
        of one event are claimed once. On PostgreSQL a concurrent transaction claiming the same
        event makes this one wait for it and then see the event as taken; the keys go in sorted,
        so two members claiming overlapping batches take the row locks in one order.
        """
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
        for chunk in _key_chunks(events):
            if mark is None:
                insert = _dialect_insert(conn)(processed_events)
                result = conn.execute(
                    insert.values(
                        [
                            {
                                "consumer_group": group,
                                "event_time_us": t,
                                "event_id": i,
                                "processed_at": now,
                            }
                            for t, i in chunk
                        ]
                    )
                    .on_conflict_do_nothing()
                    .returning(processed_events.c.event_id)
                )
                claimed.update(r[0] for r in result)
            else:
                params: list[Any] = []
                for t, i in chunk:
                    params += (group, t, i, stamp)
                row = f"({mark}, {mark}, {mark}, {mark})"
                # The DB-API cursor of the same connection (so the same transaction): SQLAlchemy's
                # result machinery costs more per batch than this statement's own work.
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(
                        f"INSERT INTO {processed_events.name} (consumer_group, event_time_us, "
                        f"event_id, processed_at) VALUES {', '.join([row] * len(chunk))} "
                        "ON CONFLICT (consumer_group, event_time_us, event_id) DO NOTHING "
                        "RETURNING event_id",
                        tuple(params),
                    )
                    claimed.update(r[0] for r in cursor.fetchall())
                finally:
                    cursor.close()
        return claimed - self._legacy_applied(conn, group, sorted(claimed))

    def _legacy_applied(self, conn: Connection, group: str, ids: Sequence[str]) -> set[str]:
        """Which `ids` the group applied before events were keyed by time."""
        if self._legacy is None or not ids:
            return set()
        c = self._legacy.c
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            rows = conn.execute(
                select(c.event_id).where(
                    c.consumer_group == group, c.event_id.in_(ids[start : start + _IN_CHUNK])
                )
            )
            found.update(r[0] for r in rows)
        return found

    def unclaim(self, conn: Connection, group: str, events: Iterable[Event]) -> None:
        """Forget that the group applied `events` (so a later copy of them is applied again)."""
        c = processed_events.c
        for chunk in _key_chunks(events):
            conn.execute(
                delete(processed_events).where(
                    c.consumer_group == group, tuple_(c.event_time_us, c.event_id).in_(chunk)
                )
            )
            if self._legacy is not None:
                legacy = self._legacy.c
                conn.execute(
                    delete(self._legacy).where(
                        legacy.consumer_group == group, legacy.event_id.in_([i for _, i in chunk])
                    )
                )

    def forget_group(self, conn: Connection, group: str) -> None:
        """Forget every event the group applied (before a rebuild of its state)."""
        for table in (processed_events, self._legacy):
            if table is not None:
                conn.execute(delete(table).where(table.c.consumer_group == group))

    def is_processed(self, group: str, event: Event) -> bool:
        """Whether the group applied this event."""
        with self.read() as conn:
            return bool(self.processed(conn, group, [event]))

    def prune(self, older_than: timedelta) -> int:
        """Forget events applied more than `older_than` ago (keep it above retention + replays)."""
        cutoff = datetime.now(UTC) - older_than
        deleted = 0
        with self.engine.begin() as conn:
            for table in (processed_events, self._legacy):
                if table is not None:
                    result = conn.execute(delete(table).where(table.c.processed_at < cutoff))
                    deleted += int(result.rowcount or 0)
        return deleted

    def close(self) -> None:
        """Dispose of the connection pools."""
        if self.reader is not None:
            self.reader.dispose()
        self.engine.dispose()
