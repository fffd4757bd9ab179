"""A consumer process for the crash tests: applies outcome events into a shared store.

Configured by `LOOPSTACK_*` variables (the event log) and:
  EV_TOPIC, EV_GROUP, EV_STORE_URL  what to consume and where to apply it;
  EV_KILL_AT  `commit:N` (SIGKILL itself at its N-th offset commit: after the store
              transaction, before the log commit) or `apply:N` (in the middle of a batch,
              at the N-th handler call); empty: never.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping, Sequence

from loopstack.core.events import ConsumerRunner, ConsumerStore, Event, EventLog, open_event_log
from loopstack.core.events.log.base import OutMessage, Record, Subscription, TopicPartition
from loopstack.core.settings import load_settings
from sqlalchemy import text
from sqlalchemy.engine import Connection


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingSubscription(Subscription):
    """Delegates to a real subscription; dies at the N-th commit."""

    def __init__(self, inner: Subscription, kill_at: int) -> None:
        self._inner, self._kill_at, self._commits = inner, kill_at, 0

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        return self._inner.poll(max_records, timeout)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._commits += 1
        if self._commits == self._kill_at:
            _die()
        self._inner.commit(offsets)

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._inner.seek(offsets)

    def close(self) -> None:
        self._inner.close()


class KillingLog(EventLog):
    """Delegates to a real log; its subscriptions die at a given commit."""

    def __init__(self, inner: EventLog, kill_at: int) -> None:
        self._inner, self._kill_at = inner, kill_at
        self.backend = inner.backend

    def append(self, messages: Sequence[OutMessage]) -> None:
        self._inner.append(messages)

    def subscribe(self, group: str, topics: Sequence[str]) -> Subscription:
        return KillingSubscription(self._inner.subscribe(group, topics), self._kill_at)

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        return self._inner.read(topic, partition, offset, limit)

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        return self._inner.watermarks(topic)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        return self._inner.offsets_for_time(topic, timestamp_ms)


def main() -> None:
    settings = load_settings()
    kind, _, count = os.environ.get("EV_KILL_AT", "").partition(":")
    log: EventLog = open_event_log(settings)
    if kind == "commit":
        log = KillingLog(log, int(count))
    calls = [0]

    def handler(event: Event, conn: Connection) -> None:
        calls[0] += 1
        if kind == "apply" and calls[0] == int(count):
            _die()
        value = event.data["value"]
        conn.execute(
            text("UPDATE totals SET n = n + 1, total = total + :v WHERE id = 1"), {"v": value}
        )
        conn.execute(
            text("INSERT INTO applied (event_id, v) VALUES (:i, :v)"), {"i": event.id, "v": value}
        )

    store = ConsumerStore(os.environ["EV_STORE_URL"])
    runner = ConsumerRunner(
        log,
        store,
        group=os.environ["EV_GROUP"],
        topics=[os.environ["EV_TOPIC"]],
        handler=handler,
        batch_size=int(os.environ.get("EV_BATCH", "200")),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        runner.run(stop, poll_timeout=0.2)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
