"""Rebuild the read model from the event log: empty it, then apply every retained prediction
and outcome again with the same projector (predictions first, so few outcomes wait).

The running consumer may keep going meanwhile: both mark what they apply under the same group
in the same database, so each event is applied once whoever gets it first. Every write is a
bounded transaction (a page of events, a chunk of windows), so neither the consumer nor a reader
waits long behind a rebuild. From the reset to the end a marker row says a rebuild runs: quality
reads answer 503 "being rebuilt" instead of a partial picture (a rebuild that died leaves it, and
the next rebuild clears it). An event the projector refuses (a poison outcome, which the consumer
dead-lettered when it first met it) is skipped and counted; a window whose metrics fail is
recorded as failed (`windows.refresh`). What the log no longer retains is gone for good.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from loopstack.core.events import ConsumerStore, Event, EventLog, Handler
from loopstack.core.events.errors import EventError, TopicNotFound
from loopstack.core.events.log.base import Record
from loopstack.core.events.store import reading
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import rebuilds
from loopstack.monitoring.feedback.windows import refresh

__all__ = ["RebuildResult", "rebuild", "rebuilding_since"]

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass
class RebuildResult:
    """What a rebuild read and applied."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Malformed or invalid records and events the projector refused (the consumer
    dead-lettered them when it first saw them)."""
    windows: int = 0
    """Windows computed (failed ones included: the quality API lists them with the reason)."""

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts."""
        return asdict(self)


def _records(log_: EventLog, topic: str) -> Iterator[Record]:
    try:
        marks = log_.watermarks(topic)
    except TopicNotFound:  # nothing published on it yet: nothing to re-apply
        return
    for partition, (low, high) in sorted(marks.items()):
        offset = low
        while offset < high:
            page = log_.read(topic, partition, offset, _PAGE)
            if not page:
                break
            yield from page
            offset = page[-1].offset + 1


def rebuilding_since(engine: Engine) -> datetime | None:
    """When the rebuild under way started, or None."""
    with reading(engine) as conn:
        found = conn.execute(select(rebuilds.c.started_at)).first()
    return None if found is None else found[0]


def _apply(
    store: ConsumerStore, group: str, handler: Handler, events: list[Event], result: RebuildResult
) -> None:
    """Apply a page in one transaction; if an event fails, each on its own, skipping those that
    keep failing (they cannot stop the rebuild)."""
    try:
        with store.engine.begin() as conn:
            applied, duplicates = _claim_and_apply(store, conn, group, handler, events)
    except SQLAlchemyError:
        raise
    except Exception:
        applied = duplicates = 0
        for event in events:
            try:
                with store.engine.begin() as conn:
                    one, dup = _claim_and_apply(store, conn, group, handler, [event])
            except SQLAlchemyError:
                raise
            except Exception as exc:
                log.warning("feedback rebuild: event %s skipped: %s", event.id, exc)
                result.skipped += 1
                continue
            applied, duplicates = applied + one, duplicates + dup
    result.applied += applied
    result.duplicates += duplicates


def _claim_and_apply(
    store: ConsumerStore, conn: Connection, group: str, handler: Handler, events: list[Event]
) -> tuple[int, int]:
    applied = duplicates = 0
    fresh = store.claim(conn, group, events)
    for event in events:
        if event.id not in fresh:
            duplicates += 1
            continue
        fresh.discard(event.id)  # a second copy in this batch is a duplicate
        handler(event, conn)
        applied += 1
    return applied, duplicates


def rebuild(
    read_model: ReadModel,
    log_: EventLog,
    group: str,
    handler: Handler,
    catalog: ModelCatalog,
    batch: int = 500,
) -> RebuildResult:
    """Empty the read model and re-apply the retained `predictions` then `outcomes`."""
    started = datetime.now(UTC).replace(tzinfo=None)
    read_model.reset(group, rebuilding=started)
    result = RebuildResult()
    for topic in (PREDICTIONS, OUTCOMES):
        pending: list[Event] = []
        for record in _records(log_, topic):
            result.records += 1
            try:
                pending.append(Event.from_json(record.value).validate())
            except EventError:
                result.skipped += 1
                continue
            if len(pending) >= batch:
                _apply(read_model.store, group, handler, pending, result)
                pending = []
        if pending:
            _apply(read_model.store, group, handler, pending, result)
    result.windows = refresh(read_model.engine, catalog)
    with read_model.engine.begin() as conn:
        conn.execute(delete(rebuilds))
    log.info("feedback: read model rebuilt from the log: %s", result)
    return result
