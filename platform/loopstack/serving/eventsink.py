"""Hand events to the Publisher off the request path: `emit` only appends to a bounded queue.

`Publisher.publish` validates, serializes and writes each batch to the process's SQLite outbox;
doing that per request would cost the caller. A sender thread does it in batches instead. If
the queue is full (the log has been unreachable for long) events are dropped and counted in
`loopstack_serving_events_dropped_total`, never blocking or failing a response.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from loopstack.core.events.envelope import Event
from loopstack.core.events.schema import dataschema_uri, full_type
from loopstack.serving.metrics import ServingMetrics

__all__ = ["EventSink", "EventPublisher", "iso_time"]

log = logging.getLogger(__name__)
_BATCH = 1000
_TICK_S = 0.05


class EventPublisher(Protocol):
    """What the sink needs of `loopstack.core.events.Publisher`."""

    def publish(self, topic: str, events: Event | list[Event]) -> None:
        """Validate and durably queue events for a topic."""


@dataclass(frozen=True, slots=True)
class _Pending:
    topic: str
    name: str
    data: dict[str, Any]
    id: str
    subject: str
    at: float
    correlationid: str | None
    traceparent: str | None


def iso_time(at: float) -> str:
    """Epoch seconds as an RFC 3339 UTC string."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


class EventSink:
    """A bounded queue in front of a Publisher, drained by one daemon thread in batches."""

    def __init__(
        self,
        publisher: EventPublisher,
        source: str,
        metrics: ServingMetrics,
        max_events: int = 100_000,
    ) -> None:
        self._publisher = publisher
        self.source = source
        self._metrics = metrics
        self.max_events = max_events
        self._queue: deque[_Pending] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._thread.start()

    def emit(
        self,
        topic: str,
        name: str,
        data: dict[str, Any],
        *,
        event_id: str,
        subject: str,
        at: float,
        correlationid: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        """Queue one event; never blocks, never raises (drops and counts when full)."""
        if len(self._queue) >= self.max_events:
            self._metrics.events_dropped.labels("queue_full").inc()
            return
        self._queue.append(
            _Pending(topic, name, data, event_id, subject, at, correlationid, traceparent)
        )
        self._idle.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything emitted so far reached the Publisher's outbox."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if self._idle.wait(0.05) and not self._queue:
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the thread."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(_TICK_S)
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                self._send(batch)
            if not self._queue:
                self._idle.set()

    def _event(self, p: _Pending) -> Event:
        return Event(
            type=full_type(p.name),
            source=self.source,
            data=p.data,
            id=p.id,
            time=datetime.fromtimestamp(p.at, UTC),
            subject=p.subject,
            dataschema=dataschema_uri(p.name),
            correlationid=p.correlationid,
            partitionkey=p.subject,
            traceparent=p.traceparent,
        )

    def _send(self, batch: list[_Pending]) -> None:
        by_topic: dict[str, list[Event]] = {}
        for pending in batch:
            by_topic.setdefault(pending.topic, []).append(self._event(pending))
        for topic, events in by_topic.items():
            try:
                self._publisher.publish(topic, events)
            except Exception:
                # One bad event must not lose its batch: retry one by one, count what fails.
                for event in events:
                    self._publish_one(topic, event)

    def _publish_one(self, topic: str, event: Event) -> None:
        for attempt in range(3):
            try:
                self._publisher.publish(topic, event)
                return
            except Exception as exc:
                reason = type(exc).__name__
                if reason != "PublishQueueFull" or attempt == 2:
                    log.warning("event %s (%s) not published: %s", event.id, event.type, exc)
                    self._metrics.events_dropped.labels(reason).inc()
                    return
                time.sleep(0.2)  # the outbox is full: give the sender a moment
