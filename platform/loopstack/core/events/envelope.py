"""`Event`: the CloudEvents 1.0 envelope every Loopstack event travels in (structured JSON mode)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from cloudevents.abstract import CloudEvent as AnyCloudEvent
from cloudevents.http import CloudEvent

from loopstack.core.events import jsoncodec
from loopstack.core.events._slots import builder
from loopstack.core.events.errors import MalformedEvent
from loopstack.core.events.schema import dataschema_uri, full_type, type_name, validate_data
from loopstack.core.ids import uuid4

__all__ = ["EXTENSIONS", "Event"]

EXTENSIONS = ("correlationid", "partitionkey", "traceparent")
_REQUIRED = ("id", "source", "type", "specversion")
_OPTIONAL = ("subject", "dataschema", *EXTENSIONS)


def _now() -> datetime:
    return datetime.now(UTC)


def _format_time(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if value is None:
        # Optional in CloudEvents, required here: consumers key what they applied by time and
        # id, and a time made up on receipt would differ between copies of one event.
        raise MalformedEvent("missing attribute 'time' (a Loopstack event says when it happened)")
    if not isinstance(value, str):
        raise MalformedEvent(f"attribute 'time' must be an RFC 3339 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads the `Z` suffix itself
    except ValueError:
        raise MalformedEvent(f"attribute 'time' is not RFC 3339: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reject(obj: dict[str, Any]) -> NoReturn:
    """Raise MalformedEvent naming the first thing wrong with a CloudEvents JSON object."""
    values = [obj.get(a) for a in _REQUIRED]
    missing = [a for a, v in zip(_REQUIRED, values, strict=True) if not v or not isinstance(v, str)]
    if missing:
        raise MalformedEvent(f"missing or empty attribute(s) {', '.join(missing)}")
    if obj["specversion"] != "1.0":
        raise MalformedEvent(f"specversion {obj['specversion']!r} is not 1.0")
    if not isinstance(obj.get("data"), dict):
        raise MalformedEvent("'data' must be a JSON object")
    for attr in _OPTIONAL:
        value = obj.get(attr)
        if value is not None and not isinstance(value, str):
            raise MalformedEvent(f"attribute {attr!r} must be a string")
    raise AssertionError("unreachable: the envelope is well formed")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Event:
    """One event: CloudEvents attributes, Loopstack extensions and the JSON `data` object.

    Build with `Event.create("prediction.v1", data, source=..., subject=model)`; the full type is
    `io.loopstack.prediction.v1`. `partitionkey` decides the log partition (events with one key
    stay in order); it defaults to `subject`.
    """

    type: str
    source: str
    data: dict[str, Any]
    id: str = field(default_factory=uuid4)
    time: datetime = field(default_factory=_now)
    subject: str | None = None
    dataschema: str | None = None
    correlationid: str | None = None
    partitionkey: str | None = None
    traceparent: str | None = None

    @classmethod
    def create(
        cls,
        name: str,
        data: Mapping[str, Any],
        *,
        source: str,
        subject: str | None = None,
        partitionkey: str | None = None,
        correlationid: str | None = None,
        traceparent: str | None = None,
    ) -> Event:
        """A new event of short type `name` (e.g. `prediction.v1`) with a fresh UUIDv4 id.

        The traceparent defaults to the current OpenTelemetry span, if any.
        """
        if traceparent is None:
            from loopstack.core.events.tracing import current_traceparent

            traceparent = current_traceparent()
        return cls(
            type=full_type(name),
            source=source,
            data=dict(data),
            subject=subject,
            dataschema=dataschema_uri(name),
            correlationid=correlationid,
            partitionkey=partitionkey if partitionkey is not None else subject,
            traceparent=traceparent,
        )

    @property
    def name(self) -> str:
        """Short type name, e.g. `prediction.v1` (raises UnknownEventType if not shipped)."""
        return type_name(self.type)

    def validate(self) -> Event:
        """Check the type is known and the data matches its schema; return self."""
        validate_data(self.name, self.data)
        return self

    def with_changes(self, **changes: Any) -> Event:
        """A copy with some attributes changed (the id stays unless given)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object (attributes + `data`), None attributes left out."""
        return self._structured(_format_time(self.time))

    def _structured(self, time: str | datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": time,
            "datacontenttype": "application/json",
        }
        # Spelled out rather than getattr in a loop: this runs once per published event.
        if self.subject is not None:
            out["subject"] = self.subject
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        if self.correlationid is not None:
            out["correlationid"] = self.correlationid
        if self.partitionkey is not None:
            out["partitionkey"] = self.partitionkey
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        out["data"] = self.data
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> Event:
        """Parse a structured-mode JSON object; raise MalformedEvent if it is not one."""
        if not isinstance(obj, dict):
            raise MalformedEvent(f"expected a JSON object, got {type(obj).__name__}")
        get = obj.get
        id_, source, type_, spec = get("id"), get("source"), get("type"), get("specversion")
        subject, dataschema = get("subject"), get("dataschema")
        correlationid, partitionkey, traceparent = (
            get("correlationid"),
            get("partitionkey"),
            get("traceparent"),
        )
        data, time = get("data"), get("time")
        # One expression for the whole envelope (this runs once per consumed event); only a
        # malformed one goes on to `_reject`, which names what is wrong.
        if not (
            id_
            and source
            and type_
            and isinstance(id_, str)
            and isinstance(source, str)
            and isinstance(type_, str)
            and spec == "1.0"
            and isinstance(data, dict)
            and (subject is None or isinstance(subject, str))
            and (dataschema is None or isinstance(dataschema, str))
            and (correlationid is None or isinstance(correlationid, str))
            and (partitionkey is None or isinstance(partitionkey, str))
            and (traceparent is None or isinstance(traceparent, str))
        ):
            _reject(obj)
        return _build(  # in field order
            type_,
            source,
            data,
            id_,
            _parse_time(time),
            subject,
            dataschema,
            correlationid,
            partitionkey,
            traceparent,
        )

    def to_json(self) -> bytes:
        """Structured-mode CloudEvents JSON bytes (what goes into the log)."""
        # The codec writes a UTC datetime itself, in the same format, at a third of the cost.
        utc = self.time.tzinfo is UTC
        return jsoncodec.dumps(self._structured(self.time if utc else _format_time(self.time)))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse structured-mode JSON bytes; raise MalformedEvent on bad JSON or envelope."""
        try:
            obj = jsoncodec.loads(raw)
        except ValueError as exc:
            raise MalformedEvent(f"not valid JSON ({exc})") from None
        return cls.from_dict(obj)

    def to_cloudevent(self) -> CloudEvent:
        """The equivalent `cloudevents` SDK object (for HTTP/Kafka bindings of the SDK)."""
        attributes = {k: v for k, v in self.to_dict().items() if k != "data"}
        return CloudEvent(attributes, self.data)

    @classmethod
    def from_cloudevent(cls, event: AnyCloudEvent) -> Event:
        """Build from any `cloudevents` SDK event (structured or binary mode on the wire)."""
        attributes = dict(event.get_attributes())
        attributes["data"] = event.get_data()
        if isinstance(attributes.get("time"), datetime):
            attributes["time"] = _format_time(attributes["time"])
        return cls.from_dict(attributes)


_build = builder(Event)
