"""Rebuild the read model from the event log: empty it, then apply every retained prediction
and outcome again with the same projector (predictions first, so few outcomes wait).

The running consumer may keep going meanwhile: both mark what they apply under the same group
in the same database, so each event is applied once whoever gets it first. Queries see a
partial read model until the rebuild ends; what the log no longer retains is gone for good.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from loopstack.core.events import ConsumerStore, Event, EventLog, Handler
from loopstack.core.events.errors import EventError
from loopstack.core.events.log.base import Record
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.windows import refresh

__all__ = ["RebuildResult", "rebuild"]

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass
class RebuildResult:
    """What a rebuild read and applied."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Malformed or invalid records (the consumer dead-lettered them when it first saw them)."""

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts."""
        return asdict(self)


def _records(log_: EventLog, topic: str) -> Iterator[Record]:
    for partition, (low, high) in sorted(log_.watermarks(topic).items()):
        offset = low
        while offset < high:
            page = log_.read(topic, partition, offset, _PAGE)
            if not page:
                break
            yield from page
            offset = page[-1].offset + 1


def _apply(
    store: ConsumerStore, group: str, handler: Handler, events: list[Event], result: RebuildResult
) -> None:
    applied = 0
    with store.engine.begin() as conn:
        fresh = store.claim(conn, group, events)
        for event in events:
            if event.id not in fresh:
                result.duplicates += 1
                continue
            fresh.discard(event.id)  # a second copy in this batch is a duplicate
            handler(event, conn)
            applied += 1
    result.applied += applied


def rebuild(
    read_model: ReadModel,
    log_: EventLog,
    group: str,
    handler: Handler,
    catalog: ModelCatalog,
    batch: int = 500,
) -> RebuildResult:
    """Empty the read model and re-apply the retained `predictions` then `outcomes`."""
    read_model.reset(group)
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
    refresh(read_model.engine, catalog)
    log.info("feedback: read model rebuilt from the log: %s", result)
    return result
