"""Dead letters: what could not be applied, with why and where it came from (never dropped)."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from loopstack.core.events import jsoncodec
from loopstack.core.events.errors import MalformedEvent, SchemaViolation, UnknownEventType
from loopstack.core.events.log.base import OutMessage, Record, dlq_topic

__all__ = ["DeadLetter", "Reason", "reason_of"]

Reason = Literal["malformed", "schema_invalid", "unknown_type", "handler_failed"]


def reason_of(exc: BaseException) -> Reason:
    """The dead-letter reason of a decoding or handling error."""
    if isinstance(exc, MalformedEvent):
        return "malformed"
    if isinstance(exc, UnknownEventType):
        return "unknown_type"
    if isinstance(exc, SchemaViolation):
        return "schema_invalid"
    return "handler_failed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of `<topic>.dlq`: the original record's bytes plus error metadata."""

    reason: Reason
    error: str
    topic: str
    partition: int
    offset: int
    key: str | None
    group: str
    attempts: int
    failed_at: str
    payload: bytes
    event_id: str | None = None
    event_type: str | None = None

    @classmethod
    def from_failure(
        cls,
        record: Record,
        exc: BaseException,
        *,
        group: str,
        attempts: int,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> DeadLetter:
        """A dead letter for `record`, which failed with `exc` after `attempts` tries."""
        return cls(
            reason=reason_of(exc),
            error=f"{type(exc).__name__}: {exc}"[:4096],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            group=group,
            attempts=attempts,
            failed_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            payload=record.value,
            event_id=event_id,
            event_type=event_type,
        )

    def to_message(self) -> OutMessage:
        """The record to append to the dead-letter topic (same key: same partition order)."""
        return OutMessage(dlq_topic(self.topic), self.key, self.to_json())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the payload as text when it is UTF-8, always as base64."""
        out = asdict(self)
        raw: bytes = out.pop("payload")
        try:
            out["payload_text"] = raw.decode()
        except UnicodeDecodeError:
            out["payload_text"] = None
        out["payload_b64"] = base64.b64encode(raw).decode()
        return out

    def to_json(self) -> bytes:
        """Serialized entry."""
        return jsoncodec.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes) -> DeadLetter:
        """Parse an entry written by `to_json`."""
        obj = dict(jsoncodec.loads(raw))
        obj.pop("payload_text", None)
        obj["payload"] = base64.b64decode(obj.pop("payload_b64"))
        return cls(**obj)
