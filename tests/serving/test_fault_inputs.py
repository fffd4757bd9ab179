"""Hostile inputs against the running inference server (issue 20): a 10 MB field, strings over
the limit, NaN/Inf/null, negative shapes and unknown outputs are refused alike on v1, v2 REST
and gRPC, with the limit or the reason named; each refusal is a failed prediction in the log,
of bounded size; and the server answers valid requests afterwards."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.core.settings import InputLimits

from .conftest import BIKE, CREDIT, Served, bike_full_row, wait_events

pytestmark = pytest.mark.integration

LIMITS = InputLimits()
HUGE = "x" * (10 * 1024 * 1024)
"""Over the body limit on every protocol."""
LONG = "y" * (LIMITS.max_string_chars + 1)
"""Under the body limit, over the string limit."""
V1 = f"/v1/models/{BIKE}:predict"
V2 = f"/v2/models/{BIKE}/infer"
Tensor = pb.ModelInferRequest.InferInputTensor


def _v1(row: dict[str, Any]) -> bytes:
    return orjson.dumps({"instances": [row]})


def _v2(row: dict[str, Any], **extra: Any) -> bytes:
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if isinstance(value, str) else "FP64",
            "shape": [1],
            "data": [value],
        }
        for name, value in row.items()
    ]
    return orjson.dumps({"inputs": inputs, **extra})


def _grpc(
    row: dict[str, Any],
    model: str = BIKE,
    shapes: dict[str, list[int]] | None = None,
    outputs: list[str] | None = None,
) -> Any:
    tensors = []
    for name, value in row.items():
        shape = (shapes or {}).get(name, [1])
        if isinstance(value, str):
            contents = pb.InferTensorContents(bytes_contents=[value.encode()])
            tensors.append(Tensor(name=name, datatype="BYTES", shape=shape, contents=contents))
        else:
            contents = pb.InferTensorContents(fp64_contents=[value])
            tensors.append(Tensor(name=name, datatype="FP64", shape=shape, contents=contents))
    asked = [pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs or []]
    return pb.ModelInferRequest(model_name=model, inputs=tensors, outputs=asked)


def _with(**values: Any) -> dict[str, Any]:
    return {**bike_full_row(), **values}


REST_CASES = [
    # name, path, body, status, reason in the answer
    ("v1 10 MB field", V1, _v1(_with(weathersit=HUGE)), 413, "serving.limits.max_body_bytes"),
    ("v2 10 MB field", V2, _v2(_with(weathersit=HUGE)), 413, "serving.limits.max_body_bytes"),
    ("v1 long string", V1, _v1(_with(weathersit=LONG)), 400, "serving.limits.max_string_chars"),
    ("v2 long string", V2, _v2(_with(weathersit=LONG)), 400, "serving.limits.max_string_chars"),
    ("v1 null number", V1, _v1(_with(temp=None)), 400, "'temp' row 0 is null"),
    ("v2 null number", V2, _v2(_with(temp=None)), 400, "'temp' row 0 is null"),
    ("v1 NaN", V1, _v1(_with(temp=0.5)).replace(b"0.5", b"NaN"), 400, "not valid JSON"),
    ("v2 Infinity", V2, _v2(_with(temp=0.5)).replace(b"0.5", b"1e400"), 400, "infinity"),
    (
        "v1 too many rows",
        V1,
        orjson.dumps({"instances": [list(bike_full_row().values())] * (LIMITS.max_rows + 1)}),
        400,
        "serving.limits.max_rows",
    ),
    (
        "v1 entity key beyond 64 bits",
        f"/v1/models/{CREDIT}:predict",
        b'{"instances": [{"customer_id": 1e308}]}',
        400,
        "out of range",
    ),
    (
        "v1 null entity key",
        f"/v1/models/{CREDIT}:predict",
        b'{"instances": [{"customer_id": null}]}',
        400,
        "must be a value",
    ),
    (
        "v1 a number nested 1,000 deep",
        V1,
        _v1(_with(temp=0.5)).replace(b"0.5", b"[" * 1000 + b"0.5" + b"]" * 1000),
        400,
        "nested too deep to show",
    ),
    (
        "v1 a sensitive field nested 1,000 deep",
        f"/v1/models/{CREDIT}:predict",
        b'{"instances": [{"customer_id": 8077, "income": ' + b"[" * 1000 + b"]" * 1000 + b"}]}",
        400,
        "come from the feature store",
    ),
    (
        "v2 unknown output",
        V2,
        _v2(bike_full_row(), outputs=[{"name": "nonsense"}]),
        400,
        "unknown output(s) nonsense",
    ),
    (
        "KServe's explain route, 10 MB",
        f"/v1/models/{BIKE}:explain",
        _v1(_with(weathersit=HUGE)),
        413,
        "serving.limits.max_body_bytes",
    ),
]

GRPC_CASES = [
    # name, request, code, reason in the details
    ("10 MB field", _grpc(_with(weathersit=HUGE)), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger"),
    (
        "long string",
        _grpc(_with(weathersit=LONG)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "serving.limits.max_string_chars",
    ),
    ("NaN", _grpc(_with(temp=math.nan)), grpc.StatusCode.INVALID_ARGUMENT, "'temp' row 0 is NaN"),
    ("Inf", _grpc(_with(temp=math.inf)), grpc.StatusCode.INVALID_ARGUMENT, "finite number"),
    ("-Inf", _grpc(_with(hum=-math.inf)), grpc.StatusCode.INVALID_ARGUMENT, "finite number"),
    (
        "infinite entity key",
        _grpc({"customer_id": math.inf}, model=CREDIT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be an integer",
    ),
    (
        "shape [-5]",
        _grpc(bike_full_row(), shapes={"temp": [-5]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'shape' must be",
    ),
    (
        "unknown output",
        _grpc(bike_full_row(), outputs=["nonsense"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown output(s) nonsense",
    ),
]


@pytest.fixture
def stub(served: Served) -> Iterator[Any]:
    big = 64 * 1024 * 1024  # the client may send what the server refuses
    options = [("grpc.max_send_message_length", big)]
    with grpc.insecure_channel(served.grpc, options=options) as channel:
        yield grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)


def _answers(served: Served, stub: Any) -> None:
    """Valid requests on every protocol still answer."""
    row = bike_full_row()
    with httpx.Client(base_url=served.rest, timeout=30) as client:
        assert client.post(V1, content=_v1(row)).status_code == 200
        assert client.post(V2, content=_v2(row)).status_code == 200
    assert stub.ModelInfer(_grpc(row)).model_name == BIKE


def test_hostile_inputs_are_refused_alike_on_every_protocol_and_logged_bounded(
    served: Served, stub: Any
) -> None:
    logged: dict[str, str] = {}  # correlation id -> case
    with httpx.Client(base_url=served.rest, timeout=60) as client:
        for name, path, body, status, reason in REST_CASES:
            request_id = f"fault-{uuid.uuid4()}"
            answer = client.post(
                path,
                content=body,
                headers={"x-request-id": request_id, "content-type": "application/json"},
            )
            assert answer.status_code == status, (name, answer.text[:300])
            assert reason in answer.json()["error"], (name, answer.json())
            assert len(answer.content) < 4096, name  # the answer never echoes the input
            if "KServe" not in name:  # KServe's own routes log no prediction
                logged[request_id] = name
    for name, request, code, reason in GRPC_CASES:
        request_id = f"fault-{uuid.uuid4()}"
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, metadata=[("x-request-id", request_id)], timeout=60)
        assert refused.value.code() == code, (name, refused.value.details())
        assert reason in (refused.value.details() or ""), (name, refused.value.details())
        assert len(refused.value.details() or "") < 2048, name
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:  # refused by gRPC before any handler
            logged[request_id] = f"grpc {name}"

    _answers(served, stub)

    events = wait_events(served.settings, lambda e: e.get("correlationid") in logged, len(logged))
    assert {e["correlationid"] for e in events.values()} == set(logged)
    for event in events.values():
        case, data = logged[event["correlationid"]], event["data"]
        assert data["status"] == "error", case
        assert len(orjson.dumps(event)) < 64 * 1024, case
        kept = data["inputs"].get("weathersit")
        if isinstance(kept, str) and ("string" in case or "10 MB" in case):
            assert kept.endswith("chars]") and len(kept) < LIMITS.event_string_chars + 32, case


def test_a_streamed_body_over_the_limit_is_refused_while_it_is_read(served: Served) -> None:
    """No Content-Length (chunked): the server stops reading at the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": [{"weathersit": "'
        for _ in range(10):
            yield b"z" * (1024 * 1024)
        yield b'"}]}'

    answer = httpx.post(f"{served.rest}{V1}", content=chunks(), timeout=60)
    assert answer.status_code == 413, answer.text[:300]
    assert "exceeds 8 MiB" in answer.json()["error"]
    assert httpx.post(f"{served.rest}{V1}", content=_v1(bike_full_row())).status_code == 200


def test_an_answered_requests_event_keeps_long_text_cut(served: Served) -> None:
    """A category under the string limit but over `event_string_chars`: answered from the full
    value, logged cut (what every consumer of the log then holds)."""
    request_id = f"fault-{uuid.uuid4()}"
    category = "w" * (LIMITS.event_string_chars * 4)
    answer = httpx.post(
        f"{served.rest}{V1}",
        content=_v1(_with(weathersit=category)),
        headers={"x-request-id": request_id},
    )
    assert answer.status_code == 200, answer.text
    (event,) = wait_events(
        served.settings, lambda e: e.get("correlationid") == request_id, 1
    ).values()
    kept = event["data"]["inputs"]["weathersit"]
    assert kept == category[: LIMITS.event_string_chars] + f"…[+{len(category) - 256} chars]"


def test_the_logger_ingest_refuses_a_body_over_the_limit_and_cuts_long_text(
    served: Served,
) -> None:
    from loopstack.serving.ingest import INGEST_PATH, REQUEST_TYPE, RESPONSE_TYPE

    event_id = str(uuid.uuid4())

    def headers(kind: str) -> dict[str, str]:
        return {"ce-specversion": "1.0", "ce-type": kind, "ce-id": event_id,
                "ce-source": "http://localhost/", "ce-inferenceservicename": "fraud"}  # fmt: skip

    url = f"{served.rest}{INGEST_PATH}"
    huge = httpx.post(url, content=_v1({"city": HUGE}), headers=headers(REQUEST_TYPE), timeout=60)
    assert huge.status_code == 413 and "max_body_bytes" in huge.json()["error"]
    request = httpx.post(url, content=_v1({"city": "c" * 10_000}), headers=headers(REQUEST_TYPE))
    response = httpx.post(
        url, content=orjson.dumps({"predictions": [1]}), headers=headers(RESPONSE_TYPE)
    )
    assert (request.status_code, response.json()["status"]) == (202, "paired")
    events = wait_events(served.settings, lambda e: e["data"].get("source_id") == event_id, 1)
    (event,) = events.values()
    assert event["data"]["inputs"] == {"city": "c" * 256 + f"…[+{10_000 - 256} chars]"}


def test_asynchronous_requests_are_held_to_the_same_limits(served: Served, tmp_path: Any) -> None:
    from loopstack.core.events import Event, Publisher, open_event_log
    from loopstack.core.events.topics import INFERENCE_REQUESTS

    from .test_async import _results

    wide = {k: [v] * (LIMITS.max_rows + 1) for k, v in bike_full_row().items()}
    sent = [
        (_with(weathersit=LONG), "max_string_chars"),
        (_with(temp=None), "'temp' row 0 is null"),
        (wide, "max_rows"),
    ]
    cases = {f"fault-async-{uuid.uuid4()}": case for case in sent}
    log = open_event_log(served.settings)
    publisher = Publisher(log, tmp_path / "app.db")
    try:
        for correlation, (inputs, _) in cases.items():
            data = {"correlation_id": correlation, "model": BIKE, "inputs": inputs}
            event = Event.create(
                "inference.request.v1",
                data,
                source="tests",
                subject=BIKE,
                correlationid=correlation,
            )
            publisher.publish(INFERENCE_REQUESTS, event)
    finally:
        publisher.close(timeout=10)
        log.close()
    results = _results(served, set(cases))
    for correlation, (_, reason) in cases.items():
        answer = results[correlation]["data"]
        assert answer["status"] == "error" and answer["error"].startswith("400"), answer
        assert reason in answer["error"], answer
    logged = wait_events(served.settings, lambda e: e.get("correlationid") in cases, len(cases))
    for event in logged.values():
        assert event["data"]["protocol"] == "async" and event["data"]["status"] == "error"
        assert len(orjson.dumps(event)) < 64 * 1024
