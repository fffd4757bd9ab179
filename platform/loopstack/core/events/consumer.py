"""Consumer runner: at-least-once delivery from the log, exactly-once application in the store.

Per batch: decode and validate every record (bad ones are dead-lettered), apply the new events
and record their ids as processed in ONE transaction of the consumer store, dead-letter what
still fails after retries, and only then commit the log offsets. A crash anywhere redelivers
the batch, and the processed ids make the redelivery a no-op.

A consumer gives either a per-event `Handler` or a `BatchHandler`; the batch one lets it apply a
whole batch with one `executemany`, which is several times cheaper than a statement per event.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from loopstack.core.events.deadletter import DeadLetter
from loopstack.core.events.envelope import Event
from loopstack.core.events.errors import EventError, MalformedEvent
from loopstack.core.events.log.base import EventLog, Record, TopicPartition
from loopstack.core.events.metrics import EventMetrics
from loopstack.core.events.store import ConsumerStore
from loopstack.core.events.tracing import batch_span, event_span
from loopstack.core.settings import EventsSettings

__all__ = [
    "BatchHandler",
    "BatchResult",
    "ConsumerProcess",
    "ConsumerRunner",
    "Handler",
    "next_offsets",
]

log = logging.getLogger(__name__)

Handler = Callable[[Event, Connection], None]
"""Applies one event; gets the store transaction's connection, so its writes commit with the
event's processed mark. It must not commit itself."""

BatchHandler = Callable[[Sequence[Event], Connection], None]
"""Applies new events in log order (per partition), e.g. with one `executemany`; same
transaction rules as `Handler`. A polled batch reaches it in slices of up to 100 events, all in
the batch's one transaction. If it raises, the runner rolls the batch back and applies the
events one at a time (calling it with a one-event list), so only events that keep failing are
dead-lettered."""

_STORE_RETRIES = 8
_CHUNK = 100
"""Records decoded and applied at a time within a batch's transaction."""

_Rejected = tuple[Record, EventError, "Event | None"]
"""A record that is not a valid event: the record, why, and the event if it parsed."""
_Applied = tuple[
    list[_Rejected], list[tuple[Record, str]], list[tuple[Record, Event, int, Exception]]
]
"""(rejected records, (record, "applied" | "duplicate"), (record, event, attempts, error))."""
_LAG_EVERY_S = 5.0
_PRUNE_EVERY_S = 3600.0
_PRUNE_RETRY_S = 60.0


class _HandlerFailed(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _each(handler: Handler) -> BatchHandler:
    """A per-event handler as a batch handler."""

    def apply(events: Sequence[Event], conn: Connection) -> None:
        for event in events:
            handler(event, conn)

    return apply


@dataclass
class BatchResult:
    """What one batch did."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """The offsets to commit after `records`: last offset + 1 per partition."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


class ConsumerRunner:
    """Runs one consumer-group member: poll, apply exactly once, dead-letter, commit."""

    def __init__(
        self,
        log_: EventLog,
        store: ConsumerStore,
        *,
        group: str,
        topics: Sequence[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        batch_size: int = 500,
        max_retries: int = 3,
        retry_backoff_s: float = 0.05,
        metrics: EventMetrics | None = None,
        trace: bool = False,
        processed_retention: timedelta | None = None,
    ) -> None:
        self._handler = handler
        if handler is not None and batch_handler is None:
            self._apply_events = _each(handler)
        elif batch_handler is not None and handler is None:
            self._apply_events = batch_handler
        else:
            raise ValueError("ConsumerRunner needs exactly one of handler and batch_handler")
        self._log = log_
        self._store = store
        self.group = group
        self.topics = list(topics)
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.metrics = metrics if metrics is not None else EventMetrics()
        self._trace = trace
        self.processed_retention = processed_retention
        self._next_prune = 0.0
        self._sub = log_.subscribe(group, self.topics)
        self._next_lag = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: EventsSettings,
        log_: EventLog,
        store: ConsumerStore,
        *,
        group: str,
        topics: Sequence[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        metrics: EventMetrics | None = None,
    ) -> ConsumerRunner:
        """A runner with the batch size and retries of `settings` (give one of the handlers)."""
        return cls(
            log_,
            store,
            group=group,
            topics=topics,
            handler=handler,
            batch_handler=batch_handler,
            batch_size=settings.batch_size,
            max_retries=settings.max_retries,
            metrics=metrics,
            trace=settings.otlp_endpoint is not None,
            processed_retention=timedelta(days=settings.processed_retention_days),
        )

    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Process batches until `stop` is set."""
        while not stop.is_set():
            self.run_once(poll_timeout)

    def run_once(self, timeout: float = 1.0) -> BatchResult:
        """Poll one batch, process it and commit its offsets."""
        records = self._sub.poll(self.batch_size, timeout)
        if time.monotonic() >= self._next_lag:
            self._report_lag()
        if self.processed_retention is not None and time.monotonic() >= self._next_prune:
            self._prune(self.processed_retention)
        if not records:
            return BatchResult()
        try:
            result = self.process(records)
        except BaseException:
            # Rewind, so a caller that keeps going re-reads the batch instead of skipping it.
            self._sub.seek(
                {
                    tp: min(r.offset for r in records if (r.topic, r.partition) == tp)
                    for tp in next_offsets(records)
                }
            )
            raise
        self._sub.commit(next_offsets(records))
        return result

    def process(self, records: Sequence[Record]) -> BatchResult:
        """Apply a batch exactly once and dead-letter what fails; does not commit offsets."""
        result = BatchResult(records=len(records))
        rejected, done, failed = self._apply(records)
        letters = [self._letter(record, exc, 1, event) for record, exc, event in rejected]
        # Counted per topic once per batch: a labels() lookup per record costs more than it tells.
        counts: dict[tuple[str, str], int] = {}
        for record in records:
            counts[(record.topic, "consumed")] = counts.get((record.topic, "consumed"), 0) + 1
        for record, outcome in done:
            counts[(record.topic, outcome)] = counts.get((record.topic, outcome), 0) + 1
            if outcome == "applied":
                result.applied += 1
            else:
                result.duplicates += 1
        for record, event, attempts, failure in failed:
            letters.append(self._letter(record, failure, attempts, event))
        counters = {
            "consumed": self.metrics.consumed,
            "applied": self.metrics.applied,
            "duplicate": self.metrics.duplicates,
        }
        for (topic, what), count in counts.items():
            counters[what].labels(topic, self.group).inc(count)
        if letters:
            # Written before the offsets are committed: a dead letter is never lost.
            self._log.append([letter.to_message() for letter in letters])
            result.dead_lettered = len(letters)
        return result

    def _letter(
        self, record: Record, exc: BaseException, attempts: int, event: Event | None
    ) -> DeadLetter:
        letter = DeadLetter.from_failure(
            record,
            exc,
            group=self.group,
            attempts=attempts,
            event_id=event.id if event else None,
            event_type=event.type if event else None,
        )
        self.metrics.dead_lettered.labels(record.topic, self.group, letter.reason).inc()
        log.warning(
            "event group %s: dead-lettering %s[%d]@%d (event %s, %s after %d attempt(s)): %s",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            letter.event_id or "?",
            letter.reason,
            attempts,
            letter.error,
        )
        return letter

    @staticmethod
    def _decode(records: Sequence[Record]) -> tuple[list[_Rejected], list[tuple[Record, Event]]]:
        """Parse and validate records: (the rejected with their errors, the good events)."""
        rejected: list[_Rejected] = []
        good: list[tuple[Record, Event]] = []
        for record in records:
            event: Event | None = None
            try:
                event = Event.from_json(record.value)
                event.validate()
            except EventError as exc:
                rejected.append((record, exc, event))
            else:
                good.append((record, event))
        return rejected, good

    def _apply(self, records: Sequence[Record]) -> _Applied:
        for attempt in range(_STORE_RETRIES):
            try:
                return self._apply_batch(records)
            except _HandlerFailed:
                break
            except DBAPIError as exc:
                # Store conflicts (another member applied the same event meanwhile, a lock
                # timeout, a deadlock): roll back and redo; the processed marks decide again.
                log.info("event group %s: store conflict (%s); retrying batch", self.group, exc)
                time.sleep(self.retry_backoff_s * (attempt + 1))
        else:
            raise RuntimeError(f"event group {self.group}: store kept failing; see log")
        rejected, good = self._decode(records)
        done: list[tuple[Record, str]] = []
        failed: list[tuple[Record, Event, int, Exception]] = []
        for record, event in good:
            outcome, attempts, failure = self._apply_one(record, event)
            if failure is None:
                done.append((record, outcome))
            else:
                failed.append((record, event, attempts, failure))
        return rejected, done, failed

    def _apply_batch(self, records: Sequence[Record]) -> _Applied:
        rejected: list[_Rejected] = []
        done: list[tuple[Record, str]] = []
        with self._store.engine.begin() as conn:
            # A chunk at a time: a whole batch of parsed events outgrows the CPU's cache, and
            # decoding then costs twice as much. One transaction still holds the whole batch.
            for start in range(0, len(records), _CHUNK):
                bad, good = self._decode(records[start : start + _CHUNK])
                rejected += bad
                if not good:
                    continue
                # Dedupe and processed mark in one statement; the handler's writes join the
                # same transaction, so a failure rolls the marks back with them.
                fresh = self._store.claim(conn, self.group, [e for _, e in good])
                new: list[Event] = []
                for record, event in good:
                    if event.id in fresh:
                        fresh.discard(event.id)  # a second copy in this batch is a duplicate
                        new.append(event)
                        done.append((record, "applied"))
                    else:
                        done.append((record, "duplicate"))
                if new:
                    try:
                        self._call(new, conn)
                    except Exception as exc:
                        raise _HandlerFailed(exc) from exc
        return rejected, done, []

    def _apply_one(self, record: Record, event: Event) -> tuple[str, int, Exception | None]:
        """Slow path after a handler failed in a batch: one transaction per event, retried."""
        last: Exception = MalformedEvent("not attempted")
        attempts = 0
        for attempt in range(self.max_retries + 1):
            try:
                with self._store.engine.begin() as conn:
                    if not self._store.claim(conn, self.group, [event]):
                        return "duplicate", attempts + 1, None
                    self._call([event], conn)
                return "applied", attempts + 1, None
            except Exception as exc:
                last = exc
                attempts += 1
                self.metrics.handler_retries.labels(record.topic, self.group).inc()
                time.sleep(min(1.0, self.retry_backoff_s * 2**attempt))
        return "failed", attempts, last

    def _call(self, events: list[Event], conn: Connection) -> None:
        if not self._trace:
            self._apply_events(events, conn)
        elif self._handler is not None:
            for event in events:
                with event_span(event, f"{self.group} process"):
                    self._handler(event, conn)
        else:
            with batch_span(events, f"{self.group} process"):
                self._apply_events(events, conn)

    def _prune(self, retention: timedelta) -> None:
        self._next_prune = time.monotonic() + _PRUNE_EVERY_S
        try:
            pruned = self._store.prune(retention)
        except DBAPIError as exc:  # housekeeping: a busy store only delays it
            log.warning("event group %s: pruning applied marks failed (%s)", self.group, exc)
            self._next_prune = time.monotonic() + _PRUNE_RETRY_S
        else:
            if pruned:
                log.info(
                    "event group %s: forgot %d applied marks past retention", self.group, pruned
                )

    def _report_lag(self) -> None:
        self._next_lag = time.monotonic() + _LAG_EVERY_S
        for (topic, partition), lag in self._sub.lag().items():
            self.metrics.lag.labels(self.group, topic, str(partition)).set(lag)

    def close(self) -> None:
        """Leave the group."""
        self._sub.close()


class ConsumerProcess(ABC):
    """A consumer process's loop around its `ConsumerRunner`: `run_once` is its one step."""

    runner: ConsumerRunner

    @abstractmethod
    def run_once(self, timeout: float = 0.5) -> BatchResult:
        """Process one batch (and whatever housekeeping is due)."""

    def run(self, stop: threading.Event, poll_timeout: float = 0.5) -> None:
        """Process batches until `stop` is set."""
        while not stop.is_set():
            self.run_once(poll_timeout)

    def drain(self, idle_polls: int = 2, timeout: float = 0.2) -> int:
        """Process until `idle_polls` polls in a row return nothing; return records processed."""
        total, idle = 0, 0
        while idle < idle_polls:
            result = self.run_once(timeout)
            total += result.records
            idle = idle + 1 if result.records == 0 else 0
        return total

    def close(self) -> None:
        """Leave the consumer group."""
        self.runner.close()
