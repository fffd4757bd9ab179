"""Publishing the loop's decisions as `decision.v1` events, stamped with model time.

Ids are derived from what was decided (model, kind, the rollout or run it belongs to), so a
decision re-published after a crash is the same event and is applied once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from loopstack.core.events.envelope import Event
from loopstack.core.events.topics import DECISIONS

__all__ = ["DecisionRecorder", "SOURCE", "iso"]

SOURCE = "loopstack/loop"


class EventPublisher(Protocol):
    """The event backbone's `Publisher`."""

    def publish(self, topic: str, events: Event) -> None:
        """Queue an event."""


def iso(when: datetime) -> str:
    """ISO 8601 UTC with a `Z`."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


class DecisionRecorder:
    """Builds and queues `decision.v1` events."""

    def __init__(self, publisher: EventPublisher, source: str = SOURCE) -> None:
        self.publisher = publisher
        self.source = source

    def record(
        self,
        model: str,
        kind: str,
        reason: str,
        at: datetime,
        key: str,
        evidence: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Queue one decision; `key` identifies it among the model's decisions of this kind."""
        data: dict[str, Any] = {"model": model, "kind": kind, "reason": reason, "at": iso(at),
                                "evidence": evidence or {}}  # fmt: skip
        data.update({k: v for k, v in fields.items() if v is not None})
        event = Event.create("decision.v1", data, source=self.source, subject=model)
        name = f"loopstack:decision:{model}:{kind}:{key}"
        self.publisher.publish(
            DECISIONS, event.with_changes(id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)))
        )
        return data
