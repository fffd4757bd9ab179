"""Outcome intake: validate a feedback batch item by item and publish the valid items as
`outcome.v1` events. A partially valid batch loses nothing: each item is accepted or rejected
with its reason.

An outcome is checked against its model's task here, before it reaches the log: a classifier's
outcome must be one of its classes (`ModelCatalog.classes`; "1" for an integer class is that
class, `yes` for 0/1 is refused with the allowed values) and is published as that class; a
regression outcome must be a finite number. No numeric outcome may exceed `max_outcome_abs` in
magnitude (`feedback.max_outcome_abs`, 1e15 by default), so none can overflow a window's metrics.

An outcome by prediction id sent right after the prediction races the feedback consumer: intake
waits up to `wait_s` (`feedback.intake_wait_s`) for the prediction to reach the read model and
then checks the outcome against that model. One whose prediction is still unknown (nor a
classifier whose classes are recorded with its champion while the registry is away) is published
if it is a bounded number or a label, and the join checks it against the prediction's classes: an
outcome that fits no prediction it names is dead-lettered there (`projector.py`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from loopstack.core.errors import InvalidInput, Unavailable
from loopstack.core.events import Event
from loopstack.core.events.errors import EventError
from loopstack.core.events.topics import OUTCOMES
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.records import label_number, parse_time, segment_value, to_iso

__all__ = ["FeedbackResult", "OutcomePublisher", "OutcomeIntake"]

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 256
"""Longest text outcome accepted (a class name)."""

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
        models_of: Callable[[Collection[str]], Mapping[str, str]] | None = None,
        wait_s: float = 0.0,
        max_outcome_abs: float = 1e15,
    ) -> None:
        self._publisher = publisher
        self._catalog = catalog
        self._model_of = model_of
        self._models_of = models_of or (
            lambda ids: {i: m for i in ids if (m := model_of(i)) is not None}
        )
        self.max_batch = max_batch
        self._source = source
        self.wait_s = wait_s
        self.max_outcome_abs = max_outcome_abs

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
        models = self._models_by_prediction(items)
        for index, item in enumerate(items):
            try:
                event = self.event_for(item, models)
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

    def _models_by_prediction(self, items: Sequence[Any]) -> dict[str, str]:
        """The models of the predictions the items name by id only, waiting up to `wait_s` for
        those the consumer has not stored yet (an outcome sent right after its prediction)."""
        wanted = {
            str(item["prediction_id"])
            for item in items
            if isinstance(item, dict)
            and item.get("prediction_id") not in (None, "")
            and not item.get("model")
        }
        if not wanted:
            return {}
        found = dict(self._models_of(wanted))
        deadline = time.monotonic() + self.wait_s
        while len(found) < len(wanted) and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            found.update(self._models_of(wanted - found.keys()))
        return found

    def event_for(self, item: Any, models: Mapping[str, str] | None = None) -> Event:
        """The validated `outcome.v1` event of one item (`models`: prediction id -> model, as
        looked up already).

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
            model = model or (models or {}).get(str(pid)) or self._model_of(str(pid))
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
        data["value"] = self._checked_value(value, str(model) if model else None)
        event = Event.create(
            "outcome.v1",
            data,
            source=self._source,
            subject=model,
            partitionkey=model or data.get("prediction_id"),
        )
        return event.validate()

    def _checked_value(self, value: Any, model: str | None) -> Any:
        """The outcome as the event carries it: a classifier's class, or the number given.

        Raises:
            InvalidInput: the value cannot be an outcome of the model (allowed values named).
        """
        if isinstance(value, dict | list):
            raise InvalidInput(f"`outcome` must be a number or a label, got {type(value).__name__}")
        classes, unchecked = None, model is None
        if model is not None:
            try:
                classes = self._catalog.classes(model)
            except Unavailable as exc:
                # The classes live with the champion in the registry, which is away: the join
                # checks the outcome against the answer's classes instead of refusing it here.
                log.warning("feedback: classes of %r unknown (%s); checked at the join", model, exc)
                unchecked = True
        if classes is not None:
            found = _as_class(value, classes)
            if found is None:
                raise InvalidInput(
                    f"`outcome` {value!r} is not a class of model {model!r}: allowed values are "
                    f"{', '.join(repr(c) for c in classes)}"
                )
            return found
        if unchecked and isinstance(value, str) and label_number(value) is None:
            if not value.strip() or len(value) > MAX_LABEL_CHARS:
                raise InvalidInput(
                    f"`outcome` must be a number or a label of at most {MAX_LABEL_CHARS} characters"
                )
            return value
        number = label_number(value)
        if model is not None and self._catalog.get(model).task == "regression":
            # yes/no and booleans are labels, not measurements: a regression refuses them.
            measured = not isinstance(value, bool) and _is_number_text(value)
            number = number if measured else None
        if number is None or not math.isfinite(number):
            raise InvalidInput(
                f"`outcome` {value!r} is not a number: model {model!r} needs a finite number"
                if model
                else f"`outcome` {value!r} is not a number, a boolean or a label"
            )
        if abs(number) > self.max_outcome_abs:
            raise InvalidInput(
                f"`outcome` {value!r} is out of range: its magnitude may be at most "
                f"{self.max_outcome_abs:g} (feedback.max_outcome_abs)"
            )
        return value


def _is_number_text(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _as_class(value: Any, classes: list[Any]) -> Any:
    """The class `value` names, or None: compared as text, so "1" and 1.0 are the class 1; a
    boolean names 0/1 (or False/True) only."""
    if isinstance(value, bool):
        wanted = {0: False, 1: True}
        for c in classes:
            if isinstance(c, bool | int) and c in wanted and wanted[c] == value:
                return c
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = segment_value(value.strip() if isinstance(value, str) else value)
    for c in classes:
        if segment_value(c) == text:
            return c
    return None
