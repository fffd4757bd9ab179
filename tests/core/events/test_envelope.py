"""The CloudEvents envelope and the shipped schemas."""

from __future__ import annotations

import copy
import uuid

import jsonschema_rs
import pytest
from cloudevents.conversion import to_json as sdk_to_json
from cloudevents.http import from_json as sdk_from_json
from loopstack.core.events import Event, known_types
from loopstack.core.events.errors import MalformedEvent, SchemaViolation, UnknownEventType
from loopstack.core.events.schema import load_schema, validate_data

from tests.core.events.helpers import NOW, prediction


def test_every_listed_type_ships_a_schema() -> None:
    assert set(known_types()) >= {
        "prediction.v1",
        "outcome.v1",
        "drift.v1",
        "quality.v1",
        "decision.v1",
        "audit.v1",
        "inference.request.v1",
        "inference.result.v1",
    }
    for name in known_types():
        jsonschema_rs.meta.validate(load_schema(name))


def test_create_sets_the_cloudevents_attributes() -> None:
    event = Event.create(
        "prediction.v1",
        prediction(),
        source="/serving/churn",
        subject="churn",
        correlationid="req-1",
    )
    assert event.type == "io.loopstack.prediction.v1"
    assert uuid.UUID(event.id).version == 4
    assert event.dataschema == "urn:loopstack:events:prediction.v1"
    assert event.partitionkey == "churn"  # defaults to the subject
    event.validate()
    body = event.to_dict()
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert body["time"].endswith("Z")


def test_json_and_cloudevent_converters_are_symmetric_and_sdk_compatible() -> None:
    event = Event.create(
        "prediction.v1",
        prediction(),
        source="s",
        subject="churn",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert Event.from_json(event.to_json()) == event
    assert Event.from_cloudevent(event.to_cloudevent()) == event
    # Our bytes are structured-mode CloudEvents the SDK reads, and the other way round.
    sdk_event = sdk_from_json(event.to_json())
    assert sdk_event["traceparent"] == event.traceparent
    assert Event.from_json(sdk_to_json(event.to_cloudevent())) == event
    assert Event.from_cloudevent(sdk_event) == event


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"specversion": "1.0", "id": "x", "type": "t"}', "source"),
        (b'{"specversion": "0.3", "id": "x", "type": "t", "source": "s", "data": {}}', "1.0"),
        (b'{"specversion": "1.0", "id": "x", "type": "t", "source": "s", "data": 3}', "data"),
        (b'{"specversion": "1.0", "id": "x", "type": "t", "source": "s", "data": {}}', "'time'"),
    ],
)
def test_malformed_bytes_are_rejected_with_the_reason(raw: bytes, match: str) -> None:
    with pytest.raises(MalformedEvent, match=match):
        Event.from_json(raw)


def test_unknown_type_and_schema_violation() -> None:
    with pytest.raises(UnknownEventType, match=r"io\.loopstack\.nope\.v1"):
        Event("io.loopstack.nope.v1", "s", {}).validate()
    with pytest.raises(UnknownEventType):
        Event("com.other.prediction.v1", "s", prediction()).validate()
    with pytest.raises(SchemaViolation, match="route"):
        Event.create("prediction.v1", prediction(route="blue"), source="s").validate()
    # An error prediction must say what went wrong; an ok one must carry outputs.
    with pytest.raises(SchemaViolation):
        Event.create("prediction.v1", prediction(status="error"), source="s").validate()
    ok = prediction()
    del ok["outputs"]
    with pytest.raises(SchemaViolation):
        Event.create("prediction.v1", ok, source="s").validate()


def test_outcome_needs_a_prediction_id_or_an_entity_key_and_time() -> None:
    base = {"value": 1, "observed_at": NOW, "source": "human"}
    validate_data("outcome.v1", {**base, "prediction_id": "p"})
    validate_data("outcome.v1", {**base, "entity_key": {"customer_id": 1}, "event_time": NOW})
    with pytest.raises(SchemaViolation):
        validate_data("outcome.v1", base)


def test_other_schemas_accept_realistic_events() -> None:
    window = {"start": NOW, "end": NOW, "size": 500}
    validate_data(
        "drift.v1",
        {
            "model": "churn",
            "version": "3",
            "window_start": NOW,
            "window_end": NOW,
            "sample_size": 500,
            "kind": "feature",
            "status": "ok",
            "drifted": True,
            "features": [
                {"feature": "tenure", "statistic": 0.31, "p_value": 0.001, "drifted": True}
            ],
        },
    )
    validate_data(
        "drift.v1",
        {
            "model": "churn",
            "version": "3",
            "window_start": NOW,
            "window_end": NOW,
            "sample_size": 3,
            "kind": "feature",
            "status": "not_enough_data",
            "drifted": False,
        },
    )
    validate_data(
        "quality.v1",
        {
            "model": "churn",
            "version": "3",
            "route": "canary",
            "state": "degraded",
            "metric": "accuracy",
            "value": 0.71,
            "baseline": 0.83,
            "window": window,
        },
    )
    validate_data(
        "decision.v1",
        {
            "model": "churn",
            "kind": "traffic_changed",
            "versions": {"champion": "3", "candidate": "4"},
            "reason": "canary healthy",
            "evidence": {"accuracy": 0.84},
            "traffic": {"3": 90, "4": 10},
        },
    )
    validate_data(
        "audit.v1",
        {
            "actor": "alice",
            "action": "model.promote",
            "target": "model:churn/version:4",
            "before": "3",
            "after": "4",
        },
    )
    validate_data("inference.request.v1", {"correlation_id": "c", "model": "churn", "inputs": {}})
    validate_data(
        "inference.result.v1",
        {"correlation_id": "c", "model": "churn", "status": "error", "error": "timeout"},
    )


def test_a_new_optional_field_keeps_an_old_consumer_working() -> None:
    # A newer producer adds an optional field: today's (older) schema still accepts the event.
    newer = Event.create("prediction.v1", prediction(explanation={"tenure": 0.4}), source="s")
    received = Event.from_json(newer.to_json()).validate()
    assert received.data["explanation"] == {"tenure": 0.4}
    # And a newer schema with the extra optional property still accepts today's events.
    schema = copy.deepcopy(load_schema("prediction.v1"))
    schema["properties"]["explanation"] = {"type": "object"}
    jsonschema_rs.validator_for(schema).validate(prediction())
