"""Consumer groups of the SQLite log: lease-based partition assignment with heartbeats in the DB.

Each member renews a row in `members`; live members are sorted by id and member i owns every
partition j with j % n == i. A member only takes a partition once its previous owner released
it or its lease expired, so two live members never read the same partition at once; offset
commits are fenced by the lease (a member that lost a partition cannot move its offset).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from loopstack.core.events.errors import LogUnavailable
from loopstack.core.events.log._sqlite_db import now_ms
from loopstack.core.events.log.base import Record, Subscription, TopicPartition, make_record

if TYPE_CHECKING:
    from loopstack.core.events.log.sqlite import SqliteEventLog

__all__ = ["SqliteSubscription"]

log = logging.getLogger(__name__)
_IDLE_SLEEP_S = 0.01
_MAX_IDLE_SLEEP_S = 0.2


class SqliteSubscription(Subscription):
    """One member of a consumer group on the SQLite log."""

    def __init__(
        self, log_: SqliteEventLog, group: str, topics: list[tuple[str, int, int]]
    ) -> None:
        self._log = log_
        self.group = group
        self.member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._names = {tid: name for name, tid, _ in topics}
        self._tids = {name: tid for name, tid, _ in topics}
        self._all = sorted((tid, p) for _, tid, count in topics for p in range(count))
        self._session_ms = log_.session_timeout_ms
        self._interval_s = log_.heartbeat_interval_ms / 1000
        self._positions: dict[tuple[int, int], int] = {}
        self._next_heartbeat = 0.0
        self._rotation = 0
        self._idle_sleep = _IDLE_SLEEP_S
        with self._errors():
            self._conn = log_.connect()
            self._heartbeat()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise LogUnavailable("sqlite", f"{self._log.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _heartbeat(self) -> None:
        """Renew membership and leases, then take or release partitions to match the target."""
        now = now_ms()
        expires = now + self._session_ms
        g, me = self.group, self.member
        with self._write() as conn:
            conn.execute(
                "INSERT INTO members (grp, member, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (grp, member) DO UPDATE SET expires_ms = excluded.expires_ms",
                (g, me, expires),
            )
            conn.execute("DELETE FROM members WHERE grp = ? AND expires_ms < ?", (g, now))
            conn.execute(
                "DELETE FROM leases WHERE grp = ? AND (expires_ms < ? OR member NOT IN "
                "(SELECT member FROM members WHERE grp = ?))",
                (g, now, g),
            )
            live = [
                r[0]
                for r in conn.execute(
                    "SELECT member FROM members WHERE grp = ? ORDER BY member", (g,)
                )
            ]
            index, count = live.index(me), len(live)
            target = {tp for j, tp in enumerate(self._all) if j % count == index}
            held = set(self._held(conn))
            conn.executemany(
                "DELETE FROM leases WHERE grp = ? AND tid = ? AND partition = ? AND member = ?",
                [(g, tid, p, me) for tid, p in held - target],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO leases (grp, tid, partition, member, expires_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [(g, tid, p, me, expires) for tid, p in target - held],
            )
            conn.execute(
                "UPDATE leases SET expires_ms = ? WHERE grp = ? AND member = ?", (expires, g, me)
            )
            owned = set(self._held(conn))
            for tp in owned - set(self._positions):
                row = conn.execute(
                    "SELECT offset FROM group_offsets WHERE grp = ? AND tid = ? AND partition = ?",
                    (g, *tp),
                ).fetchone()
                self._positions[tp] = int(row[0]) if row else 0
        for tp in set(self._positions) - owned:
            del self._positions[tp]
        self._next_heartbeat = time.monotonic() + self._interval_s

    def _held(self, conn: sqlite3.Connection) -> list[tuple[int, int]]:
        return [
            (int(t), int(p))
            for t, p in conn.execute(
                "SELECT tid, partition FROM leases WHERE grp = ? AND member = ?",
                (self.group, self.member),
            )
        ]

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        try:
            self._heartbeat()
        except sqlite3.OperationalError as exc:
            # A locked file delays the heartbeat; commits stay fenced by the leases meanwhile.
            log.warning("event group %s: heartbeat failed (%s); retrying", self.group, exc)
            self._next_heartbeat = time.monotonic() + self._interval_s / 2

    def assignment(self) -> list[TopicPartition]:
        """The (topic, partition) pairs this member owns now."""
        return sorted((self._names[tid], p) for tid, p in self._positions)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Records of owned partitions after this member's position, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self._maybe_heartbeat()
            with self._errors():
                out = self._fetch(max_records)
            if out:
                self._idle_sleep = _IDLE_SLEEP_S
                return out
            if time.monotonic() >= deadline:
                return out
            time.sleep(min(self._idle_sleep, max(0.0, deadline - time.monotonic())))
            # An idle member backs off (up to _MAX_IDLE_SLEEP_S): a poll is 4+ queries.
            self._idle_sleep = min(self._idle_sleep * 2, _MAX_IDLE_SLEEP_S)

    def _fetch(self, max_records: int) -> list[Record]:
        owned = sorted(self._positions)
        if not owned:
            return []
        self._rotation = (self._rotation + 1) % len(owned)
        out: list[Record] = []
        for tp in owned[self._rotation :] + owned[: self._rotation]:
            want = max_records - len(out)
            if want <= 0:
                break
            rows = self._conn.execute(
                "SELECT offset, ts, key, value FROM records WHERE tid = ? AND partition = ? "
                "AND offset >= ? ORDER BY offset LIMIT ?",
                (*tp, self._positions[tp], want),
            ).fetchall()
            if rows:
                name = self._names[tp[0]]
                out.extend(make_record(name, tp[1], o, k, bytes(v), ts) for o, ts, k, v in rows)
                self._positions[tp] = int(rows[-1][0]) + 1
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store next offsets for partitions this member still leases (others are skipped)."""
        g, me = self.group, self.member
        expires = now_ms() + self._session_ms
        with self._errors(), self._write() as conn:
            held = set(self._held(conn))
            rows = []
            for (topic, partition), offset in offsets.items():
                tp = (self._tids[topic], partition)
                if tp in held:
                    rows.append((g, *tp, offset))
                else:
                    log.info(
                        "event group %s: %s[%d] moved to another member; not committing",
                        g,
                        topic,
                        partition,
                    )
            conn.executemany(
                "INSERT INTO group_offsets (grp, tid, partition, offset) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, tid, partition) DO UPDATE SET offset = excluded.offset",
                rows,
            )
            # A commit proves liveness: renew the leases in the same transaction.
            conn.execute(
                "UPDATE leases SET expires_ms = ? WHERE grp = ? AND member = ?", (expires, g, me)
            )
            conn.execute(
                "UPDATE members SET expires_ms = ? WHERE grp = ? AND member = ?", (expires, g, me)
            )

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Set the group's offsets (any partition) and this member's positions (owned ones)."""
        with self._errors(), self._write() as conn:
            for (topic, partition), offset in offsets.items():
                tp = (self._tids[topic], partition)
                conn.execute(
                    "INSERT INTO group_offsets (grp, tid, partition, offset) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (grp, tid, partition) DO UPDATE SET offset = excluded.offset",
                    (self.group, *tp, offset),
                )
                if tp in self._positions:
                    self._positions[tp] = offset

    def lag(self) -> dict[TopicPartition, int]:
        """Records after the committed offset, per owned partition."""
        out: dict[TopicPartition, int] = {}
        with self._errors():
            for tid, partition in sorted(self._positions):
                high, committed = self._conn.execute(
                    "SELECT h.next_offset, coalesce((SELECT o.offset FROM group_offsets o "
                    "WHERE o.grp = ? AND o.tid = h.tid AND o.partition = h.partition), 0) "
                    "FROM heads h WHERE h.tid = ? AND h.partition = ?",
                    (self.group, tid, partition),
                ).fetchone()
                out[(self._names[tid], partition)] = max(0, int(high) - int(committed))
        return out

    def close(self) -> None:
        """Release this member's leases so the others take over at once."""
        try:
            with self._write() as conn:
                conn.execute(
                    "DELETE FROM leases WHERE grp = ? AND member = ?", (self.group, self.member)
                )
                conn.execute(
                    "DELETE FROM members WHERE grp = ? AND member = ?", (self.group, self.member)
                )
        except sqlite3.Error as exc:
            log.warning("event group %s: leaving failed (%s); leases expire", self.group, exc)
        finally:
            self._conn.close()
