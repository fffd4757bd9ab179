"""Errors of the event backbone; each message says what the operator should do."""

from __future__ import annotations

from loopstack.core.errors import ConfigurationError, Conflict, InvalidInput, NotFound, Unavailable

__all__ = [
    "EventError",
    "InvalidTopic",
    "LogUnavailable",
    "MalformedEvent",
    "OutboxLocked",
    "PublishQueueFull",
    "PublisherClosed",
    "SchemaViolation",
    "TopicNotFound",
    "UnknownEventType",
    "UnknownTopic",
]


class EventError(InvalidInput):
    """An event could not be understood: fix the producer, then re-drive it from the DLQ."""


class MalformedEvent(EventError):
    """The bytes are not a CloudEvents 1.0 structured JSON event."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"malformed event: {detail}; producers must send CloudEvents 1.0 structured JSON "
            "(use loopstack.core.events.Event.to_json)"
        )


class UnknownEventType(EventError):
    """The `type` attribute names no schema this Loopstack version ships."""

    def __init__(self, event_type: str, known: list[str]) -> None:
        super().__init__(
            f"unknown event type {event_type!r}; known types: {', '.join(known)}. "
            "Upgrade the consumer if the producer is newer, or fix the producer's type"
        )


class SchemaViolation(EventError):
    """The event data does not match the JSON Schema of its type and version."""

    def __init__(self, event_type: str, detail: str) -> None:
        super().__init__(
            f"event of type {event_type!r} does not match its schema: {detail}; fix the producer "
            "(a breaking change needs a new type version, e.g. .v2)"
        )


class InvalidTopic(InvalidInput):
    """A topic name Kafka would reject."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"invalid topic name {topic!r}: use 1-200 characters of letters, digits, '.', '_' and '-'"
        )


class TopicNotFound(NotFound):
    """The topic does not exist in the event log."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist; check the name (events are published first)"
        )


class UnknownTopic(TopicNotFound):
    """A topic named by an operator is neither a Loopstack topic nor one in the log (a typo)."""

    def __init__(self, topic: str, known: list[str]) -> None:
        NotFound.__init__(
            self,
            f"unknown topic {topic!r}; known topics: {', '.join(known)}. Name the source "
            "topic (e.g. `loopstack events dlq outcomes`)",
        )


class PublishQueueFull(Unavailable):
    """The outbox holds `events.outbox_max_events` unsent events: the log is down or too slow."""

    def __init__(self, outbox: str, depth: int, limit: int) -> None:
        super().__init__(
            f"event outbox {outbox} is full ({depth} of {limit} events unsent): the event log is "
            "unreachable or slower than the producers; check it (`loopstack status`), or raise "
            "LOOPSTACK_EVENTS__OUTBOX_MAX_EVENTS"
        )


class PublisherClosed(Conflict):
    """`publish` was called after `close`."""

    def __init__(self, outbox: str) -> None:
        super().__init__(f"publisher of outbox {outbox} is closed; create a new one to publish")


class LogUnavailable(Unavailable):
    """The event log (Kafka broker or SQLite file) did not accept or return events in time."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(
            f"event log ({backend}) is unavailable: {detail}; check that it runs and is reachable "
            "(LOOPSTACK_EVENTS__KAFKA_BOOTSTRAP_SERVERS / LOOPSTACK_EVENTS__SQLITE_PATH); "
            "published events wait in the outbox meanwhile"
        )


class OutboxLocked(ConfigurationError):
    """Another process owns this outbox file; each process needs its own outbox name."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"outbox {path} is in use by another process; give each publishing process its own "
            "outbox name (Publisher.open(..., name=...))"
        )
