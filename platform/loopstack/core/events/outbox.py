"""Publisher: `publish` never waits on the event log.

Events go into a bounded in-memory queue that is written through to a local SQLite outbox file
(one per process) before `publish` returns; a background sender thread drains the queue to the
log in order, in batches, retrying while the log is unreachable. After a crash the next
`Publisher` on the same file sends the leftovers first.

What the log accepted is marked by a watermark (the last id sent), not deleted row by row:
deleting rows rewrites their pages, which cost as much as writing them. The table is emptied
whenever the sender catches up (SQLite truncates a table without a WHERE clause at a small cost),
and cut to the watermark every `_PURGE_EVERY` events if it never does.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from loopstack.core.events.envelope import Event
from loopstack.core.events.errors import OutboxLocked, PublisherClosed, PublishQueueFull
from loopstack.core.events.log._sqlite_db import insert_rows
from loopstack.core.events.log.base import EventLog, OutMessage, check_topic
from loopstack.core.events.metrics import EventMetrics
from loopstack.core.settings import Settings

__all__ = ["Publisher"]

log = logging.getLogger(__name__)
_MAX_BACKOFF_S = 1.0
_PURGE_EVERY = 50_000
# Fewer checkpoints: each copies the WAL's pages into the file (at most ~40 MB of WAL).
_WAL_AUTOCHECKPOINT_PAGES = 10_000


class Publisher:
    """Validates, serializes and durably queues events; a thread sends them to the log."""

    def __init__(
        self,
        log_: EventLog,
        path: Path,
        *,
        max_events: int = 100_000,
        batch_size: int = 500,
        synchronous: str = "NORMAL",
        metrics: EventMetrics | None = None,
        validate: bool = True,
    ) -> None:
        self._log = log_
        self.path = path
        self.name = path.stem
        self.max_events = max_events
        self.batch_size = batch_size
        self.metrics = metrics if metrics is not None else EventMetrics()
        self._validate = validate
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = self._take_lock(path)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}")
        # AUTOINCREMENT: ids never go back after deletes, so id order is publish order forever.
        self._db.executescript(
            "BEGIN IMMEDIATE;"
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, key TEXT, value BLOB NOT NULL);"
            "CREATE TABLE IF NOT EXISTS outbox_sent (id INTEGER NOT NULL);"
            "INSERT INTO outbox_sent SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM outbox_sent);"
            "DELETE FROM outbox WHERE id <= (SELECT id FROM outbox_sent);"
            "COMMIT;"
        )
        self._db_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, OutMessage]] = deque(
            (int(i), OutMessage(t, k, bytes(v)))
            for i, t, k, v in self._db.execute(
                "SELECT id, topic, key, value FROM outbox ORDER BY id"
            )
        )
        self._in_flight = 0
        self._unpurged = 0
        self._closed = False
        self._abort = False
        self._gauge = self.metrics.spill_depth.labels(self.name)
        self._gauge.set(len(self._queue))
        if self._queue:
            log.info(
                "outbox %s: %d events left from a previous run; sending", path, len(self._queue)
            )
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.name}", daemon=True)
        self._thread.start()

    @classmethod
    def open(
        cls, settings: Settings, log_: EventLog, name: str, metrics: EventMetrics | None = None
    ) -> Publisher:
        """The publisher of outbox `name` (one per process, e.g. `api`, `serving-churn`)."""
        ev = settings.events
        folder = settings.resolve(ev.outbox_dir or settings.state_path / "events" / "outbox")
        return cls(
            log_,
            folder / f"{name}.db",
            max_events=ev.outbox_max_events,
            batch_size=ev.batch_size,
            synchronous=ev.sqlite_synchronous,
            metrics=metrics,
        )

    @staticmethod
    def _take_lock(path: Path) -> IO[str]:
        handle = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutboxLocked(str(path)) from None
        return handle

    @property
    def depth(self) -> int:
        """Events accepted by `publish` and not yet in the log."""
        return len(self._queue) + self._in_flight

    def publish(
        self, topic: str, events: Event | Sequence[Event], *, validate: bool | None = None
    ) -> None:
        """Validate and queue events for `topic`; returns at once.

        Args:
            topic: Topic to publish to.
            events: One event or several (kept in this order per partition key).
            validate: Check each event against its schema here (default: the publisher's
                `validate`). Only code that builds events itself should pass False, to save
                the check (about a third of `publish`): consumers validate every event again
                and dead-letter invalid ones, so an invalid event is never applied, but the
                caller no longer hears of it.

        Raises:
            SchemaViolation / UnknownEventType: an event does not match its schema.
            PublishQueueFull: the outbox holds `max_events` unsent events.
        """
        batch = [events] if isinstance(events, Event) else list(events)
        check_topic(topic)
        if self._validate if validate is None else validate:
            for event in batch:
                event.validate()
        self.publish_raw([OutMessage(topic, e.partitionkey, e.to_json()) for e in batch])

    def publish_raw(self, messages: Sequence[OutMessage]) -> None:
        """Queue already serialized records as they are (re-drives, bridges, tests)."""
        if not messages:
            return
        # The outbox lock orders writers (ids are publish order); the queue's condition is only
        # held briefly, so the sender keeps appending to the log while the outbox is written.
        with self._db_lock:
            with self._cond:
                if self._closed:
                    raise PublisherClosed(str(self.path))
                depth = self.depth
                if depth + len(messages) > self.max_events:
                    self.metrics.publish_rejected.labels(self.name).inc()
                    raise PublishQueueFull(str(self.path), depth, self.max_events)
            self._db.execute("BEGIN")
            try:
                insert_rows(
                    self._db,
                    "outbox (topic, key, value)",
                    [(m.topic, m.key, m.value) for m in messages],
                )
                last = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # One writer (the file lock) and one transaction: the ids are consecutive.
            first = last - len(messages) + 1
            with self._cond:
                self._queue.extend(zip(range(first, last + 1), messages, strict=True))
                self._gauge.set(self.depth)
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait(0.5)
                if not self._queue or self._abort:
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
                self._in_flight = len(batch)
            sent = self._send([m for _, m in batch])
            if sent:
                self._mark_sent(batch[-1][0], len(batch))
                per_topic: dict[str, int] = {}
                for _, m in batch:
                    per_topic[m.topic] = per_topic.get(m.topic, 0) + 1
                for topic, count in per_topic.items():
                    self.metrics.published.labels(topic).inc(count)
            with self._cond:
                if not sent:
                    self._queue.extendleft(reversed(batch))
                self._in_flight = 0
                self._gauge.set(self.depth)
                self._cond.notify_all()
                if not sent:
                    return

    def _mark_sent(self, last: int, count: int) -> None:
        """Record that the log has every event up to id `last`."""
        # Under the outbox lock no `publish_raw` is between its insert and its enqueue, so an
        # empty queue means every row of the table is in the log.
        with self._db_lock:
            with self._cond:
                caught_up = not self._queue
            if caught_up:
                self._db.execute("DELETE FROM outbox")
                self._unpurged = 0
                return
            self._db.execute("UPDATE outbox_sent SET id = ?", (last,))
            self._unpurged += count
            if self._unpurged >= _PURGE_EVERY:
                self._db.execute("DELETE FROM outbox WHERE id <= ?", (last,))
                self._unpurged = 0

    def _send(self, messages: list[OutMessage]) -> bool:
        """Append with retries until it works (True) or the publisher is aborted (False)."""
        backoff = 0.05
        while True:
            try:
                self._log.append(messages)
                return True
            except Exception as exc:  # the log's failure modes vary; keep every event, retry
                self.metrics.send_errors.labels(self.name).inc()
                log.warning(
                    "outbox %s: sending %d events failed (%s); retrying in %.2fs",
                    self.name,
                    len(messages),
                    exc,
                    backoff,
                )
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline:
                if self._abort:
                    return False
                time.sleep(0.01)
            backoff = min(_MAX_BACKOFF_S, backoff * 2)

    def flush(self, timeout: float) -> int:
        """Wait until every queued event is in the log or `timeout` passes; return how many remain."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.depth and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return self.depth

    def close(self, timeout: float = 10.0) -> int:
        """Send what is queued (up to `timeout`), stop the sender; leftovers stay in the outbox.

        Returns how many events were left for the next start.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        left = self.flush(timeout)
        self._abort = True
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            with self._db_lock:
                self._db.close()
            self._lockfile.close()
        return left
