"""The event backbone: CloudEvents envelopes, two event logs, outbox publishing, exactly-once
consumers, dead letters, metrics and tracing."""

from __future__ import annotations

from loopstack.core.events.consumer import BatchResult, ConsumerProcess, ConsumerRunner, Handler
from loopstack.core.events.deadletter import DeadLetter
from loopstack.core.events.envelope import Event
from loopstack.core.events.log import EventLog, OutMessage, Record, dlq_topic, open_event_log
from loopstack.core.events.metrics import EventMetrics
from loopstack.core.events.outbox import Publisher
from loopstack.core.events.schema import known_types
from loopstack.core.events.service import EventService
from loopstack.core.events.store import ConsumerStore, reading

__all__ = [
    "BatchResult",
    "ConsumerProcess",
    "ConsumerRunner",
    "ConsumerStore",
    "DeadLetter",
    "Event",
    "EventLog",
    "EventMetrics",
    "EventService",
    "Handler",
    "OutMessage",
    "Publisher",
    "Record",
    "dlq_topic",
    "known_types",
    "open_event_log",
    "reading",
]
