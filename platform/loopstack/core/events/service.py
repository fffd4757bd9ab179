"""`EventService`: what the API and CLI do with events: tail a topic, list dead letters, replay.

Replays and re-drives append the original bytes (same event ids) to the topic again; consumer
groups that applied an event already skip it, so running a replay twice is harmless.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopstack.core.events import jsoncodec
from loopstack.core.events.deadletter import DeadLetter
from loopstack.core.events.envelope import Event
from loopstack.core.events.errors import EventError, InvalidTopic, TopicNotFound, UnknownTopic
from loopstack.core.events.log.base import (
    DLQ_SUFFIX,
    EventLog,
    OutMessage,
    Record,
    check_topic,
    dlq_topic,
)
from loopstack.core.events.topics import PLATFORM_TOPICS

__all__ = ["EventPage", "EventService", "ReplayResult", "format_cursor", "parse_cursor"]

_PAGE = 1000
_MAX_SCAN = 1_000_000


def parse_cursor(cursor: str | None) -> dict[int, int]:
    """`"0:15,1:7"` -> {0: 15, 1: 7} (next offset per partition)."""
    if not cursor:
        return {}
    try:
        return {int(p): int(o) for p, o in (part.split(":") for part in cursor.split(","))}
    except ValueError:
        raise InvalidTopic(f"cursor {cursor!r}") from None


def format_cursor(positions: dict[int, int]) -> str:
    """{0: 15, 1: 7} -> `"0:15,1:7"`."""
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class EventPage:
    """Records of a topic, oldest first, and the cursor to continue after them."""

    topic: str
    items: list[dict[str, Any]]
    cursor: str


@dataclass
class ReplayResult:
    """What a replay or re-drive appended and what it left out."""

    republished: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class EventService:
    """Reads and re-drives events on one event log; the API routes and the CLI call this."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def _scan(self, topic: str, start: dict[int, int]) -> Iterator[Record]:
        """Every record of every partition from `start` on (per partition, in offset order)."""
        marks = self._log.watermarks(topic)
        for partition, (low, _) in sorted(marks.items()):
            offset = max(low, start.get(partition, low))
            scanned = 0
            while scanned < _MAX_SCAN:
                page = self._log.read(topic, partition, offset, _PAGE)
                if not page:
                    break
                yield from page
                scanned += len(page)
                offset = page[-1].offset + 1

    def tail(self, topic: str, limit: int = 50, after: str | None = None) -> EventPage:
        """The last `limit` records of `topic`, or the first `limit` after cursor `after`."""
        check_topic(topic)
        positions = parse_cursor(after)
        marks = self._log.watermarks(topic)
        if positions:
            records = heapq.nsmallest(
                limit,
                self._scan(topic, positions),
                key=lambda r: (r.timestamp_ms, r.partition, r.offset),
            )
        else:
            # Start near the end; a broker that under-reports the end only makes us scan more.
            start = {p: max(low, high - limit) for p, (low, high) in marks.items()}
            last: deque[Record] = deque(maxlen=limit)
            for record in sorted(
                self._scan(topic, start), key=lambda r: (r.timestamp_ms, r.partition, r.offset)
            ):
                last.append(record)
            records = list(last)
        records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        cursor = dict(positions) if positions else {p: high for p, (_, high) in marks.items()}
        for r in records:
            cursor[r.partition] = max(cursor.get(r.partition, 0), r.offset + 1)
        return EventPage(topic, [self.describe(r) for r in records], format_cursor(cursor))

    @staticmethod
    def describe(record: Record) -> dict[str, Any]:
        """A record as JSON: position, time, key and the parsed event (or the raw text)."""
        out: dict[str, Any] = {
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": _iso(record.timestamp_ms),
            "key": record.key,
        }
        try:
            out["event"] = jsoncodec.loads(record.value)
        except ValueError:
            out["raw"] = record.value.decode(errors="replace")
        return out

    def dead_letters(self, topic: str, limit: int = 50, after: str | None = None) -> EventPage:
        """Dead letters of `topic` (entries of `<topic>.dlq`) with reason and origin.

        A topic that has none yet (its DLQ topic is created by the first dead letter) answers
        an empty page; a name that is neither a Loopstack topic nor in the log raises
        UnknownTopic naming the known ones.
        """
        dlq = dlq_topic(check_topic(topic))
        try:
            page = self.tail(dlq, limit, after)
        except TopicNotFound:
            source = dlq[: -len(DLQ_SUFFIX)]
            if source not in PLATFORM_TOPICS and not self._exists(source):
                raise UnknownTopic(source, list(PLATFORM_TOPICS)) from None
            return EventPage(dlq, [], after or "")
        items = []
        for item in page.items:
            entry = item.get("event")
            if isinstance(entry, dict):
                entry = {k: v for k, v in entry.items() if k != "payload_b64"}
                items.append({**item, "event": None, "dead_letter": entry})
        return EventPage(page.topic, items, page.cursor)

    def _exists(self, topic: str) -> bool:
        try:
            self._log.watermarks(topic)
        except TopicNotFound:
            return False
        return True

    def replay(
        self,
        topic: str,
        since: datetime,
        until: datetime | None = None,
        *,
        target: str | None = None,
    ) -> ReplayResult:
        """Append again the records of `topic` stamped in [since, until) to `target` (default same)."""
        start_ms = int(since.timestamp() * 1000)
        end_ms = int(until.timestamp() * 1000) if until else None
        out_topic = check_topic(target or topic)
        start = self._log.offsets_for_time(check_topic(topic), start_ms)
        result = ReplayResult()
        batch: list[OutMessage] = []
        for record in self._scan(topic, start):
            if record.timestamp_ms < start_ms or (
                end_ms is not None and record.timestamp_ms >= end_ms
            ):
                continue
            batch.append(OutMessage(out_topic, record.key, record.value))
            if len(batch) >= _PAGE:
                result.republished += self._flush(batch)
        result.republished += self._flush(batch)
        return result

    def redrive(
        self,
        topic: str,
        *,
        since: datetime | None = None,
        event_ids: set[str] | None = None,
        accept: Callable[[DeadLetter], bool] | None = None,
    ) -> ReplayResult:
        """Send dead letters of `topic` back to it; entries still malformed or invalid stay."""
        source = topic[: -len(DLQ_SUFFIX)] if topic.endswith(DLQ_SUFFIX) else topic
        start = (
            self._log.offsets_for_time(dlq_topic(source), int(since.timestamp() * 1000))
            if since
            else {}
        )
        result = ReplayResult()
        batch: list[OutMessage] = []
        seen: set[str] = set()
        for record in self._scan(dlq_topic(check_topic(source)), start):
            letter = DeadLetter.from_json(record.value)
            if since and record.timestamp_ms < since.timestamp() * 1000:
                continue
            if (event_ids and letter.event_id not in event_ids) or (accept and not accept(letter)):
                continue
            try:
                event = Event.from_json(letter.payload).validate()
            except EventError as exc:
                result.skipped += 1
                reason = type(exc).__name__
                result.reasons[reason] = result.reasons.get(reason, 0) + 1
                continue
            if event.id in seen:  # the same event dead-lettered by several groups: send once
                continue
            seen.add(event.id)
            batch.append(OutMessage(letter.topic, letter.key, letter.payload))
        result.republished = self._flush(batch)
        return result

    def _flush(self, batch: list[OutMessage]) -> int:
        count = len(batch)
        if batch:
            self._log.append(list(batch))
            batch.clear()
        return count
