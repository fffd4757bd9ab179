"""Durable answers at the sink: an answer waits for its events' outbox write, group-committed,
and is refused (503) rather than given when its events cannot be written.

A real Publisher on a real SQLite event log and outbox file; no server (the SIGKILL of a
server is `tests/faults/test_answers_survive_sigkill.py`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopstack.core.events import Event, EventLog, Publisher, open_event_log
from loopstack.core.events.errors import TopicNotFound
from loopstack.core.settings import load_settings
from loopstack.serving.errors import AnswerNotDurable
from loopstack.serving.eventsink import EventSink, Receipt
from loopstack.serving.metrics import ServingMetrics
from prometheus_client import CollectorRegistry

from tests.core.events.helpers import prediction

TOPIC = "predictions"


class CountingPublisher(Publisher):
    """A real Publisher that counts its outbox transactions (one per `publish`)."""

    calls = 0

    def publish(self, topic: str, events: Any, *, validate: bool | None = None) -> None:
        type(self).calls += 1
        super().publish(topic, events, validate=validate)


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    settings = load_settings(project_dir=tmp_path, state_dir=tmp_path / "state")
    log = open_event_log(settings)
    try:
        yield log
    finally:
        log.close()


def make_sink(
    event_log: EventLog, tmp_path: Path, *, outbox_max: int = 100_000, queue_max: int = 100_000
) -> tuple[EventSink, Publisher, ServingMetrics]:
    CountingPublisher.calls = 0
    publisher = CountingPublisher(
        event_log, tmp_path / "outbox" / "serving.db", max_events=outbox_max
    )
    metrics = ServingMetrics(CollectorRegistry())
    return EventSink(publisher, "tests", metrics, queue_max, durable=True), publisher, metrics


def emit(sink: EventSink, receipt: Receipt | None, pid: str, **data: Any) -> None:
    sink.emit(
        TOPIC,
        "prediction.v1",
        prediction(prediction_id=pid, **data),
        event_id=pid,
        subject="churn",
        at=time.time(),
        receipt=receipt,
    )


def outbox_or_log_ids(path: Path, event_log: EventLog) -> set[str]:
    """Ids the outbox file holds unsent, plus those already in the log: what survives a kill."""
    with sqlite3.connect(path) as db:
        sent = db.execute("SELECT id FROM outbox_sent").fetchone()[0]
        rows = db.execute("SELECT value FROM outbox WHERE id > ?", (sent,)).fetchall()
    ids = {Event.from_json(bytes(value)).id for (value,) in rows}
    try:
        marks = event_log.watermarks(TOPIC)
    except TopicNotFound:  # nothing sent yet
        marks = {}
    for partition, (first, _) in marks.items():
        for record in event_log.read(TOPIC, partition, first, 100_000):
            ids.add(Event.from_json(record.value).id)
    return ids


def dropped(metrics: ServingMetrics, reason: str) -> float:
    value = metrics.events_dropped.labels(reason)._value.get()
    return float(value)


def test_concurrent_answers_wait_for_one_shared_outbox_write(
    event_log: EventLog, tmp_path: Path
) -> None:
    sink, publisher, _ = make_sink(event_log, tmp_path)

    async def answer(i: int) -> str:
        receipt = sink.receipt()
        emit(sink, receipt, f"p-{i}")
        await sink.settled(receipt)
        return f"p-{i}"

    async def main() -> list[str]:
        return await asyncio.gather(*(answer(i) for i in range(200)))

    try:
        answered = asyncio.run(main())
        # Every answered id is in the outbox file (or already in the log) when its answer leaves.
        assert set(answered) <= outbox_or_log_ids(publisher.path, event_log)
        # Group commit: far fewer outbox transactions than answers.
        assert CountingPublisher.calls <= 20, CountingPublisher.calls
    finally:
        sink.close()
        publisher.close()


def test_an_answer_whose_events_cannot_be_written_is_refused_and_the_sink_goes_on(
    event_log: EventLog, tmp_path: Path
) -> None:
    sink, publisher, metrics = make_sink(event_log, tmp_path, outbox_max=100, queue_max=500)
    try:
        too_many = sink.receipt()
        for i in range(150):  # more than the outbox may hold unsent: PublishQueueFull
            emit(sink, too_many, f"big-{i}")
        with pytest.raises(AnswerNotDurable, match=r"outbox .* is full"):
            sink.settle(too_many)
        assert dropped(metrics, "PublishQueueFull") == 150

        over_queue = sink.receipt()
        for i in range(600):  # more than the sink's own queue holds
            emit(sink, over_queue, f"q-{i}")
        with pytest.raises(AnswerNotDurable, match="event queue"):
            asyncio.run(sink.settled(over_queue))
        assert dropped(metrics, "queue_full") == 600

        # One event that breaks its schema fails only its own answer, not the batch's others.
        bad, good = sink.receipt(), sink.receipt()
        emit(sink, bad, "bad", status="not-a-status")
        emit(sink, good, "good")

        async def both() -> list[Any]:
            return await asyncio.gather(
                sink.settled(bad), sink.settled(good), return_exceptions=True
            )

        bad_result, good_result = asyncio.run(both())
        assert isinstance(bad_result, AnswerNotDurable), bad_result
        assert good_result is None
        # A failed request's event: waited for, never turned into another error.
        quiet = sink.receipt()
        emit(sink, quiet, "quiet", status="not-a-status")
        asyncio.run(sink.settled(quiet, refuse=False))
        assert "good" in outbox_or_log_ids(publisher.path, event_log)
    finally:
        sink.close()
        publisher.close()


def test_without_durable_answers_emit_only_queues(event_log: EventLog, tmp_path: Path) -> None:
    publisher = Publisher(event_log, tmp_path / "outbox" / "serving.db")
    sink = EventSink(publisher, "tests", ServingMetrics(CollectorRegistry()), durable=False)
    try:
        assert sink.receipt() is None
        emit(sink, None, "p-1")
        sink.settle(None)  # nothing to wait for
        asyncio.run(sink.settled(None))
        assert sink.flush(10)
        assert "p-1" in outbox_or_log_ids(publisher.path, event_log)
    finally:
        sink.close()
        publisher.close()


class SlowPublisher(Publisher):
    """A real Publisher on a disk that takes a second per write."""

    def publish(self, topic: str, events: Any, *, validate: bool | None = None) -> None:
        time.sleep(1.0)
        super().publish(topic, events, validate=validate)


def test_an_answer_is_refused_when_its_write_takes_too_long(
    event_log: EventLog, tmp_path: Path
) -> None:
    publisher = SlowPublisher(event_log, tmp_path / "outbox" / "serving.db")
    sink = EventSink(publisher, "tests", ServingMetrics(CollectorRegistry()), durable=True)
    try:
        slow, slower = sink.receipt(), sink.receipt()
        emit(sink, slow, "slow")
        emit(sink, slower, "slower")
        with pytest.raises(AnswerNotDurable, match=r"not written within 0\.2 s"):
            asyncio.run(sink.settled(slow, timeout=0.2))
        with pytest.raises(AnswerNotDurable, match=r"not written within 0\.2 s"):
            sink.settle(slower, timeout=0.2)
        assert sink.flush(10)  # written late all the same: never an answer without its event
    finally:
        sink.close()
        publisher.close()
