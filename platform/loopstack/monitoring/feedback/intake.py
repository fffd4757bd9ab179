"""Outcome intake: validate a feedback batch item by item and publish the valid items as
`outcome.v1` events. A partially valid batch loses nothing: each item is accepted or rejected
with its reason."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from loopstack.core.errors import InvalidInput
from loopstack.core.events import Event
from loopstack.core.events.errors import EventError
from loopstack.core.events.topics import OUTCOMES
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.records import label_number, parse_time, to_iso

__all__ = ["FeedbackResult", "OutcomePublisher", "OutcomeIntake"]

_FIELDS = {
    "prediction_id",
    "outcome",
    "value",
    "observed_at",
    "source",
    "model",
    "entity_key",
    "event_time",
    "reviewer",
    "note",
}


class OutcomePublisher(Protocol):
    """Where outcome events go (the event backbone's `Publisher`)."""

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Queue events for the log (durably) and return."""


@dataclass
class FeedbackResult:
    """What happened to each item of a batch."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Items published."""
        return sum(1 for i in self.items if i["status"] == "accepted")

    @property
    def rejected(self) -> int:
        """Items refused."""
        return len(self.items) - self.accepted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready answer."""
        return {"accepted": self.accepted, "rejected": self.rejected, "items": self.items}


class OutcomeIntake:
    """Turns feedback items into validated `outcome.v1` events and publishes them."""

    def __init__(
        self,
        publisher: OutcomePublisher,
        catalog: ModelCatalog,
        model_of: Callable[[str], str | None],
        *,
        max_batch: int = 10_000,
        source: str = "loopstack/api",
    ) -> None:
        self._publisher = publisher
        self._catalog = catalog
        self._model_of = model_of
        self.max_batch = max_batch
        self._source = source

    def submit(self, items: Sequence[Any]) -> FeedbackResult:
        """Validate every item, publish the valid ones, report each.

        Raises:
            InvalidInput: the batch is empty or larger than `max_batch`.
        """
        if not items:
            raise InvalidInput("the feedback batch is empty: send at least one item")
        if len(items) > self.max_batch:
            raise InvalidInput(
                f"the feedback batch has {len(items)} items, more than {self.max_batch}; split "
                "it (or raise LOOPSTACK_FEEDBACK__MAX_BATCH)"
            )
        result = FeedbackResult()
        events: list[Event] = []
        for index, item in enumerate(items):
            try:
                event = self.event_for(item)
            except (InvalidInput, EventError) as exc:
                result.items.append({"index": index, "status": "rejected", "reason": str(exc)})
                continue
            events.append(event)
            result.items.append(
                {
                    "index": index,
                    "status": "accepted",
                    "event_id": event.id,
                    "prediction_id": event.data.get("prediction_id"),
                }
            )
        if events:
            self.publish(events)
        return result

    def publish(self, events: Sequence[Event]) -> None:
        """Hand validated outcome events to the log."""
        self._publisher.publish(OUTCOMES, events)

    def event_for(self, item: Any) -> Event:
        """The validated `outcome.v1` event of one item.

        Raises:
            InvalidInput: the item says why it cannot be an outcome.
        """
        if not isinstance(item, dict):
            raise InvalidInput(f"an item must be an object, got {type(item).__name__}")
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s) {', '.join(unknown)}")
        value = item.get("outcome", item.get("value"))
        if value is None:
            raise InvalidInput("`outcome` is missing")
        if "observed_at" not in item:
            raise InvalidInput("`observed_at` is missing")
        data: dict[str, Any] = {
            "value": value,
            "observed_at": to_iso(parse_time(item["observed_at"])),
            "source": item.get("source", "system"),
        }
        if data["source"] not in ("system", "human"):
            raise InvalidInput(f"`source` must be system or human, got {data['source']!r}")
        for name in ("reviewer", "note"):
            if item.get(name) is not None:
                if not isinstance(item[name], str):
                    raise InvalidInput(f"`{name}` must be text")
                data[name] = item[name]
        model = item.get("model")
        pid = item.get("prediction_id")
        if pid not in (None, ""):
            data["prediction_id"] = str(pid)
            model = model or self._model_of(str(pid))
        elif item.get("entity_key") and item.get("event_time"):
            if not model:
                raise InvalidInput("an outcome by `entity_key` + `event_time` needs `model`")
            if not isinstance(item["entity_key"], dict):
                raise InvalidInput("`entity_key` must be an object (entity name -> value)")
            data["entity_key"] = item["entity_key"]
            data["event_time"] = to_iso(parse_time(item["event_time"]))
        else:
            raise InvalidInput("give `prediction_id`, or `entity_key` + `event_time` (+ `model`)")
        if model:
            data["model"] = str(model)
        self._check_value(value, model)
        event = Event.create(
            "outcome.v1",
            data,
            source=self._source,
            subject=model,
            partitionkey=model or data.get("prediction_id"),
        )
        return event.validate()

    def _check_value(self, value: Any, model: str | None) -> None:
        number = label_number(value)
        if number is None or not math.isfinite(number):
            raise InvalidInput(f"`outcome` {value!r} is not a number, a boolean or yes/no")
        if model and self._catalog.get(model).task == "classification" and number not in (0, 1):
            raise InvalidInput(
                f"model {model!r} is a classifier: `outcome` must be 0/1, got {value!r}"
            )
