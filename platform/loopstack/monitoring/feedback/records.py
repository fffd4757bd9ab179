"""Typed views of `prediction.v1` and `outcome.v1` events: what the read model stores and joins.

Conventions the join relies on:
- An entity key is stored canonically (`{"customer_id": "42"}`: keys sorted, values as text), so
  an outcome that says 42 and a prediction that says "42" meet.
- Times are UTC, stored naive (the same SQL on SQLite and PostgreSQL).
- A shadow prediction carries the id of the answer the caller got for the same request
  (`paired_prediction_id`): an outcome sent for that id labels both.
- The score is the regression prediction, P(second class) of a binary classifier, or the top
  class probability of a multiclass one; the class probabilities themselves stay in the document
  (`outputs.probabilities`, class -> probability in the model's order), where live quality and
  the rollout's losses read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopstack.core.errors import InvalidInput
from loopstack.core.events import Event

__all__ = [
    "OutcomeRow",
    "class_probabilities",
    "label_key",
    "PredictionRow",
    "canonical_entity",
    "label_number",
    "lookup_field",
    "parse_time",
    "segment_value",
    "to_iso",
]

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def parse_time(value: Any) -> datetime:
    """An RFC 3339 string (or datetime) as a naive UTC datetime.

    Raises:
        InvalidInput: the value is not a time.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"{value!r} is not an RFC 3339 time") from None
    else:
        raise InvalidInput(f"{value!r} is not an RFC 3339 time")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def to_iso(moment: datetime | None) -> str | None:
    """A naive UTC datetime as RFC 3339 with `Z`."""
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def canonical_entity(entity_key: Mapping[str, Any] | None) -> str | None:
    """The entity key as canonical JSON (sorted keys, values as text), or None."""
    if not entity_key:
        return None
    return json.dumps({str(k): segment_value(v) for k, v in entity_key.items()}, sort_keys=True)


def segment_value(value: Any) -> str:
    """A segment or key value as text: 1, 1.0 and "1" are the same segment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def label_key(value: Any, classes: Collection[str]) -> str | None:
    """The class an outcome names, as the key serving gives it in `outputs.probabilities` (`str`
    of the class), or None if it names none: 2, 2.0 and "2" are the class "2"; a boolean is
    "True"/"False", else "1"/"0"."""
    candidates: tuple[str, ...]
    if isinstance(value, bool):
        candidates = (str(value), "1" if value else "0")
    elif isinstance(value, float) and value.is_integer():
        candidates = (str(int(value)),)
    else:
        candidates = (str(value),)
    return next((c for c in candidates if c in classes), None)


def label_number(value: Any) -> float | None:
    """An outcome value as a number (booleans and yes/no labels as 1/0); None if it is none."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return 1.0
        if text in _FALSE:
            return 0.0
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def lookup_field(data: Mapping[str, Any], name: str) -> Any:
    """A field of a prediction: from `inputs`, `features.values`, a v1 instance or a v2 input."""
    inputs = data.get("inputs") or {}
    if name in inputs:
        return inputs[name]
    values = (data.get("features") or {}).get("values") or {}
    if name in values:
        return values[name]
    instances = inputs.get("instances")
    if (
        isinstance(instances, list)
        and instances
        and isinstance(instances[0], dict)
        and name in instances[0]
    ):
        return instances[0][name]
    tensors = inputs.get("inputs")
    if isinstance(tensors, list):
        for tensor in tensors:
            if isinstance(tensor, dict) and tensor.get("name") == name:
                found = tensor.get("data")
                return found[0] if isinstance(found, list) and found else found
    return None


def _first(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _score(outputs: Mapping[str, Any]) -> float | None:
    """P(second class) of two, the top probability of more, else the prediction as a number."""
    probabilities = outputs.get("probabilities")
    if isinstance(probabilities, list) and probabilities:
        flat = probabilities[0] if isinstance(probabilities[0], list) else probabilities
        values = [float(v) for v in flat]
    elif isinstance(probabilities, dict) and probabilities:
        # Serving writes the classes in the model's order, which JSON keeps.
        values = [float(v) for v in probabilities.values()]
    else:
        return label_number(_first(outputs.get("prediction")))
    if len(values) == 2:
        return values[1]
    return max(values)


def class_probabilities(document: Mapping[str, Any]) -> dict[str, float] | None:
    """A logged classifier answer's class -> probability, in the model's order; None if the
    answer has none (a regression model, a failed request)."""
    probabilities = (document.get("outputs") or {}).get("probabilities")
    if isinstance(probabilities, dict) and probabilities:
        return {str(k): float(v) for k, v in probabilities.items()}
    return None


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One logged prediction, as the read model keeps it."""

    prediction_id: str
    model: str
    version: str
    route: str
    request_time: datetime
    correlation: str | None
    """For a shadow answer: the id of the answer the caller got (`paired_prediction_id`)."""
    entity: str | None
    status: str
    score: float | None
    segments: dict[str, str]
    event_id: str
    document: str
    """JSON of what was predicted: inputs, features, outputs, entity key, latency, explanation."""

    @classmethod
    def from_event(cls, event: Event, segment_names: list[str]) -> PredictionRow:
        """Read a validated `prediction.v1` event; `segment_names` come from the model spec."""
        data = event.data
        segments = {}
        for name in segment_names:
            value = lookup_field(data, name)
            if value is not None:
                segments[name] = segment_value(value)
        document = {
            k: data.get(k)
            for k in (
                "inputs",
                "features",
                "outputs",
                "entity_key",
                "protocol",
                "latency_ms",
                "error",
                "explanation",
                "review",
            )
            if data.get(k) is not None
        }
        paired = data.get("paired_prediction_id")
        return cls(
            prediction_id=str(data["prediction_id"]),
            model=str(data["model"]),
            version=str(data["version"]),
            route=str(data["route"]),
            request_time=parse_time(data["request_time"]),
            correlation=str(paired) if paired else None,
            entity=canonical_entity(data.get("entity_key")),
            status=str(data["status"]),
            score=_score(data.get("outputs") or {}) if data["status"] == "ok" else None,
            segments=segments,
            event_id=event.id,
            document=json.dumps(document, default=str),
        )


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One observed outcome, by prediction id or by model + entity key + event time."""

    event_id: str
    prediction_id: str | None
    model: str | None
    entity: str | None
    event_time: datetime | None
    value: float | None
    value_json: str
    source: str
    observed_at: datetime

    @classmethod
    def from_event(cls, event: Event) -> OutcomeRow:
        """Read a validated `outcome.v1` event (the model may also be the event's subject)."""
        data = event.data
        event_time = data.get("event_time")
        return cls(
            event_id=event.id,
            prediction_id=data.get("prediction_id"),
            model=data.get("model") or event.subject,
            entity=canonical_entity(data.get("entity_key")),
            event_time=parse_time(event_time) if event_time else None,
            value=label_number(data["value"]),
            value_json=json.dumps(data["value"], default=str),
            source=str(data["source"]),
            observed_at=parse_time(data["observed_at"]),
        )

    @property
    def label(self) -> Any:
        """The outcome as it was sent (a class name, a number)."""
        return json.loads(self.value_json)

    @property
    def key(self) -> str:
        """How this outcome names its prediction (for messages)."""
        if self.prediction_id:
            return f"prediction {self.prediction_id!r}"
        return f"model {self.model!r} entity {self.entity} at {to_iso(self.event_time)}"

    def beats(self, source: str | None, observed_at: datetime | None, event_id: str | None) -> bool:
        """Whether this outcome replaces the current one: human over system, then the later
        observation, then the larger event id (so the result never depends on arrival order)."""
        if source is None:
            return True
        rank = (self.source == "human", self.observed_at, self.event_id)
        return rank > (source == "human", observed_at or datetime.min, event_id or "")
