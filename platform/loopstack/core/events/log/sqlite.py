"""SQLite event log: a durable WAL-mode log for one machine, shared safely by several processes.

Not a broker: producers and consumers open the same file. Offsets are assigned under SQLite's
write lock (`BEGIN IMMEDIATE`), consumer-group offsets and partition leases live in the same
database, and retention runs from the writers.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from loopstack.core.events.errors import LogUnavailable
from loopstack.core.events.log._sqlite_db import (
    connect,
    ensure_topic,
    insert_rows,
    lookup_topic,
    now_ms,
)
from loopstack.core.events.log.base import (
    EventLog,
    OutMessage,
    Record,
    Subscription,
    check_topic,
    make_record,
    partition_for,
)
from loopstack.core.settings import Settings

__all__ = ["SqliteEventLog"]

_RETENTION_EVERY_S = 5.0


class SqliteEventLog(EventLog):
    """The embedded event log in one SQLite file (default `<state_dir>/events/events.db`)."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        partitions: int = 4,
        retention_ms: int = 7 * 24 * 3600 * 1000,
        retention_bytes: int | None = None,
        busy_timeout_ms: int = 5000,
        synchronous: str = "NORMAL",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1000,
    ) -> None:
        self.path = path
        self.partitions = partitions
        self.retention_ms = retention_ms
        self.retention_bytes = retention_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Locked right now: connect on first use instead (the outbox keeps events meanwhile).
        with contextlib.suppress(sqlite3.OperationalError):
            self._db = self.connect()
        self._topics: dict[str, tuple[int, int]] = {}
        self._round_robin = itertools.count()
        self._last_retention = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteEventLog:
        """Build from `Settings.events`."""
        ev = settings.events
        path = ev.sqlite_path or settings.state_path / "events" / "events.db"
        return cls(
            settings.resolve(path),
            partitions=ev.partitions,
            retention_ms=ev.retention_ms,
            retention_bytes=ev.retention_bytes,
            busy_timeout_ms=ev.sqlite_busy_timeout_ms,
            synchronous=ev.sqlite_synchronous,
            session_timeout_ms=ev.group_session_timeout_ms,
            heartbeat_interval_ms=ev.group_heartbeat_interval_ms,
        )

    def connect(self) -> sqlite3.Connection:
        """A new connection to the log file (each subscription holds its own)."""
        return connect(self.path, self.busy_timeout_ms, self.synchronous)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self.connect()
        return self._db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise LogUnavailable("sqlite", f"{self.path}: {exc}") from exc

    def _topic(self, name: str, create: bool) -> tuple[int, int]:
        found = self._topics.get(name)
        if found is None:
            check_topic(name)
            conn = self._conn
            found = (
                ensure_topic(conn, name, self.partitions) if create else lookup_topic(conn, name)
            )
            self._topics[name] = found
        return found

    def append(self, messages: Sequence[OutMessage]) -> None:
        """Append a batch in one transaction; raise LogUnavailable if the file stays locked."""
        if not messages:
            return
        with self._lock, self._errors():
            topics = {m.topic: self._topic(m.topic, create=True) for m in messages}
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._append_locked(conn, messages, topics)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if time.monotonic() - self._last_retention > _RETENTION_EVERY_S:
            self.enforce_retention()

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        messages: Sequence[OutMessage],
        topics: dict[str, tuple[int, int]],
    ) -> None:
        ts = now_ms()
        heads: dict[tuple[int, int], list[int]] = {}
        rows = []
        for m in messages:
            tid, count = topics[m.topic]
            if m.key is None:
                partition = next(self._round_robin) % count
            else:
                partition = partition_for(m.key, count)
            head = heads.get((tid, partition))
            if head is None:
                row = conn.execute(
                    "SELECT next_offset, bytes FROM heads WHERE tid = ? AND partition = ?",
                    (tid, partition),
                ).fetchone()
                head = heads[(tid, partition)] = [int(row[0]), int(row[1])]
            rows.append((tid, partition, head[0], ts, m.key, m.value))
            head[0] += 1
            head[1] += len(m.value)
        insert_rows(conn, "records (tid, partition, offset, ts, key, value)", rows)
        conn.executemany(
            "UPDATE heads SET next_offset = ?, bytes = ? WHERE tid = ? AND partition = ?",
            [(h[0], h[1], tid, p) for (tid, p), h in heads.items()],
        )

    def subscribe(self, group: str, topics: Sequence[str]) -> Subscription:
        """Join `group`; partitions are split between live members by leases in the database."""
        from loopstack.core.events.log.sqlite_group import SqliteSubscription

        with self._lock, self._errors():
            resolved = [(t, *self._topic(t, create=True)) for t in topics]
        return SqliteSubscription(self, group, resolved)

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Records of one partition from `offset` on (gaps left by retention are skipped)."""
        with self._lock, self._errors():
            tid, _ = self._topic(topic, create=False)
            rows = self._conn.execute(
                "SELECT offset, ts, key, value FROM records WHERE tid = ? AND partition = ? "
                "AND offset >= ? ORDER BY offset LIMIT ?",
                (tid, partition, offset, limit),
            ).fetchall()
        return [make_record(topic, partition, o, k, bytes(v), ts) for o, ts, k, v in rows]

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(first kept offset, next offset) per partition."""
        with self._lock, self._errors():
            tid, _ = self._topic(topic, create=False)
            rows = self._conn.execute(
                "SELECT h.partition, h.next_offset, (SELECT min(r.offset) FROM records r "
                "WHERE r.tid = h.tid AND r.partition = h.partition) FROM heads h WHERE h.tid = ?",
                (tid,),
            ).fetchall()
        return {int(p): (int(low if low is not None else high), int(high)) for p, high, low in rows}

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """First offset at or after `timestamp_ms` per partition (the end if none)."""
        marks = self.watermarks(topic)
        with self._lock, self._errors():
            tid, _ = self._topic(topic, create=False)
            out = {}
            for partition, (_, high) in marks.items():
                row = self._conn.execute(
                    "SELECT offset FROM records WHERE tid = ? AND partition = ? AND ts >= ? "
                    "ORDER BY offset LIMIT 1",
                    (tid, partition, timestamp_ms),
                ).fetchone()
                out[partition] = int(row[0]) if row else high
        return out

    def enforce_retention(self) -> int:
        """Delete records older than `retention_ms` or beyond `retention_bytes`; return how many."""
        self._last_retention = time.monotonic()
        deleted = 0
        with self._lock, self._errors():
            conn = self._conn
            parts = conn.execute("SELECT tid, partition, bytes FROM heads").fetchall()
            cutoff = now_ms() - self.retention_ms
            for tid, partition, size in parts:
                # One short transaction per partition: producers wait for the lock only briefly.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    deleted += self._trim(conn, tid, partition, cutoff, size)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        return deleted

    def _trim(
        self, conn: sqlite3.Connection, tid: int, partition: int, cutoff: int, size: int
    ) -> int:
        row = conn.execute(
            "SELECT offset FROM records WHERE tid = ? AND partition = ? AND ts >= ? "
            "ORDER BY offset LIMIT 1",
            (tid, partition, cutoff),
        ).fetchone()
        # No record newer than the cutoff: the whole partition has expired.
        keep_from = int(row[0]) if row else sys.maxsize
        if self.retention_bytes is not None and size > self.retention_bytes:
            excess, acc = size - self.retention_bytes, 0
            for offset, length in conn.execute(
                "SELECT offset, length(value) FROM records WHERE tid = ? AND partition = ? "
                "AND offset < ? ORDER BY offset",
                (tid, partition, sys.maxsize),
            ):
                if acc >= excess:
                    keep_from = max(keep_from, offset) if row else keep_from
                    break
                acc += length
        freed, count = conn.execute(
            "SELECT coalesce(sum(length(value)), 0), count(*) FROM records "
            "WHERE tid = ? AND partition = ? AND offset < ?",
            (tid, partition, keep_from),
        ).fetchone()
        if count:
            conn.execute(
                "DELETE FROM records WHERE tid = ? AND partition = ? AND offset < ?",
                (tid, partition, keep_from),
            )
            conn.execute(
                "UPDATE heads SET bytes = bytes - ? WHERE tid = ? AND partition = ?",
                (freed, tid, partition),
            )
        return int(count)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
