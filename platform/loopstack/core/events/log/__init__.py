"""Event logs and the factory that picks one from `Settings.events.backend`."""

from __future__ import annotations

from loopstack.core.events.log.base import (
    EventLog,
    OutMessage,
    Record,
    Subscription,
    TopicPartition,
    dlq_topic,
)
from loopstack.core.settings import Settings

__all__ = [
    "EventLog",
    "OutMessage",
    "Record",
    "Subscription",
    "TopicPartition",
    "dlq_topic",
    "open_event_log",
]


def open_event_log(settings: Settings) -> EventLog:
    """The event log `settings.events.backend` names (`sqlite` or `kafka`)."""
    if settings.events.backend == "kafka":
        from loopstack.core.events.log.kafka import KafkaEventLog

        return KafkaEventLog.from_settings(settings)
    from loopstack.core.events.log.sqlite import SqliteEventLog

    return SqliteEventLog.from_settings(settings)
