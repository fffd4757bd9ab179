"""Hand events to the Publisher off the request path, and tell an answer when its events are safe.

`Publisher.publish` validates, serializes and writes each batch to the process's SQLite outbox
(WAL: a committed write survives a kill of the process). Doing that per request would cost the
caller, so one sender thread does it in batches. Two ways in:

- `emit` without a receipt appends to a bounded queue: it never blocks nor raises; when the
  queue is full the event is dropped and counted in `loopstack_serving_events_dropped_total`.
  Shadow mirrors, ingested logger events, and every event when `serving.durable_answers` is off.
- `emit` with a `Receipt` (`receipt()` gives one when answers are durable) holds the events of
  one answer; `settle` / `settled` queue them together and return once the outbox transaction
  holding them has committed. Requests that arrive while one transaction commits go together in
  the next (group commit). An event the outbox refuses (the queue or the outbox is full, the
  write failed) settles its receipt with the reason: the caller answers 503 (`AnswerNotDurable`)
  instead of an answer whose record a crash could lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from loopstack.core.events.envelope import Event
from loopstack.core.events.errors import PublishQueueFull
from loopstack.core.events.schema import dataschema_uri, full_type
from loopstack.serving.errors import AnswerNotDurable
from loopstack.serving.metrics import ServingMetrics

__all__ = ["EventSink", "EventPublisher", "Receipt", "iso_time"]

log = logging.getLogger(__name__)
_BATCH = 1000
_TICK_S = 0.05
_FULL_RETRIES = 3
_FULL_PAUSE_S = 0.2
SETTLE_TIMEOUT_S = 10.0
"""Longest an answer waits for its events' outbox write before it is refused (503)."""


class EventPublisher(Protocol):
    """What the sink needs of `loopstack.core.events.Publisher`."""

    def publish(self, topic: str, events: Event | list[Event]) -> None:
        """Validate and durably queue events for a topic."""


class Receipt:
    """The events of one answer: settled once the outbox holds them all, or one was refused."""

    __slots__ = ("_done", "_events", "_left", "_lock", "_waiter", "error")

    def __init__(self) -> None:
        self._events: list[_Pending] = []
        self._left = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._waiter: asyncio.Future[None] | None = None
        self.error: str | None = None
        """Why an event was refused (the first reason), once settled."""

    def _settle(self, count: int, error: str | None) -> asyncio.Future[None] | None:
        """`count` of the events are written (`error` None) or refused (sender thread).

        Returns the future an event loop awaits, once all are settled, for the caller to resolve.
        """
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self._left -= count
            if self._left > 0:
                return None
            waiter = self._waiter
        self._done.set()
        return waiter


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
    receipt: Receipt | None = None


def iso_time(at: float) -> str:
    """Epoch seconds as an RFC 3339 UTC string."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _wake_loops(futures: list[asyncio.Future[None]]) -> None:
    """Resolve settled answers' futures: one call per event loop, however many answers."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for future in futures:
        by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_resolve, waiting)


class EventSink:
    """A bounded queue in front of a Publisher, drained by one daemon thread in batches."""

    def __init__(
        self,
        publisher: EventPublisher,
        source: str,
        metrics: ServingMetrics,
        max_events: int = 100_000,
        durable: bool = False,
    ) -> None:
        self._publisher = publisher
        self.source = source
        self._metrics = metrics
        self.max_events = max_events
        self.durable = durable
        self._queue: deque[_Pending] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._thread.start()

    def receipt(self) -> Receipt | None:
        """A receipt for one answer's events when answers are durable, else None."""
        return Receipt() if self.durable else None

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
        receipt: Receipt | None = None,
    ) -> None:
        """Queue one event, or hold it in `receipt` until the receipt is settled.

        Without a receipt it never blocks nor raises (drops and counts when full).
        """
        pending = _Pending(
            topic, name, data, event_id, subject, at, correlationid, traceparent, receipt
        )
        if receipt is not None:
            receipt._events.append(pending)
            return
        if len(self._queue) >= self.max_events:
            self._metrics.events_dropped.labels("queue_full").inc()
            return
        self._queue.append(pending)
        self._idle.clear()

    def settle(self, receipt: Receipt | None, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Send the receipt's events and wait until the outbox holds them (blocking).

        Raises:
            AnswerNotDurable: an event was refused, or the write took longer than `timeout`.
        """
        if receipt is None:
            return
        self._submit(receipt)
        if not receipt._done.wait(timeout):
            raise AnswerNotDurable(f"not written within {timeout:g} s")
        if receipt.error is not None:
            raise AnswerNotDurable(receipt.error)

    async def settled(
        self, receipt: Receipt | None, *, refuse: bool = True, timeout: float = SETTLE_TIMEOUT_S
    ) -> None:
        """`settle` for the event loop: other requests are served while this one waits.

        Args:
            receipt: The answer's events (None: answers are not durable, return at once).
            refuse: Raise when the events are not in the outbox; False for a failed request's
                event, whose error answer stands either way (the loss is counted).
            timeout: Seconds to wait for the write.

        Raises:
            AnswerNotDurable: with `refuse`, an event was refused or the write took too long.
        """
        if receipt is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submit(receipt)
        with receipt._lock:
            pending = receipt._left > 0
            if pending:
                receipt._waiter = future
        if pending:
            # Not `asyncio.wait_for`: it costs a task per answer; a timer handle is enough.
            timer = loop.call_later(timeout, _resolve, [future])
            try:
                await future
            finally:
                timer.cancel()
        if not receipt._done.is_set():
            reason: str | None = f"not written within {timeout:g} s"
        else:
            reason = receipt.error
        if reason is not None and refuse:
            raise AnswerNotDurable(reason)

    def _submit(self, receipt: Receipt) -> None:
        events = receipt._events
        receipt._left = len(events)  # before the sender can see one of them
        if not events:
            receipt._done.set()
            return
        if len(self._queue) + len(events) > self.max_events:
            self._metrics.events_dropped.labels("queue_full").inc(len(events))
            # settled before anyone waits on it: no future to resolve
            receipt._settle(len(events), f"the event queue holds {len(self._queue)} events")
            return
        self._queue.extend(events)
        self._idle.clear()
        self._wake.set()  # an answer waits: write now, not at the next tick

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
            # What queued while a batch was written goes in the next one: the group commit.
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
        by_topic: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_topic.setdefault(pending.topic, []).append(pending)
        for topic, pendings in by_topic.items():
            error = self._publish_batch(topic, pendings)
            if error is None:
                _settle_all(pendings, None)
            elif isinstance(error, PublishQueueFull):
                self._drop(pendings, error)
            else:
                # One bad event must not lose its batch: send one by one, count what fails.
                for pending in pendings:
                    self._publish_one(topic, pending)

    def _publish_batch(self, topic: str, pendings: list[_Pending]) -> Exception | None:
        """Publish; a full outbox gets a few short pauses to drain. The error, or None."""
        for attempt in range(_FULL_RETRIES):
            try:
                self._publisher.publish(topic, [self._event(p) for p in pendings])
                return None
            except PublishQueueFull as exc:
                if attempt == _FULL_RETRIES - 1:
                    return exc
                time.sleep(_FULL_PAUSE_S)
            except Exception as exc:
                return exc
        return None  # pragma: no cover - the loop always returns

    def _publish_one(self, topic: str, pending: _Pending) -> None:
        try:
            self._publisher.publish(topic, self._event(pending))
        except Exception as exc:
            self._drop([pending], exc)
        else:
            _settle_all([pending], None)

    def _drop(self, pendings: list[_Pending], exc: Exception) -> None:
        reason = type(exc).__name__
        log.warning(
            "%d event(s) not published (first %s, %s): %s",
            len(pendings),
            pendings[0].id,
            pendings[0].name,
            exc,
        )
        self._metrics.events_dropped.labels(reason).inc(len(pendings))
        _settle_all(pendings, f"{reason}: {exc}")


def _settle_all(pendings: list[_Pending], error: str | None) -> None:
    counts: dict[int, tuple[Receipt, int]] = {}
    for pending in pendings:
        if pending.receipt is not None:
            receipt, count = counts.get(id(pending.receipt), (pending.receipt, 0))
            counts[id(pending.receipt)] = (receipt, count + 1)
    waiting = [
        future
        for receipt, count in counts.values()
        if (future := receipt._settle(count, error)) is not None
    ]
    if waiting:
        _wake_loops(waiting)
