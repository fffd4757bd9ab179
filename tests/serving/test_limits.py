"""`serving.limits` without a server: every decoder and the runtime's check refuse the same
requests naming the limit; the body is read only up to its limit (streamed or declared, on
every route); events keep bounded copies; the logger ingest holds bounded halves."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from loopstack.core.settings import InputLimits
from loopstack.serving.codec import decode_grpc, decode_v1, decode_v2
from loopstack.serving.errors import BadRequest, BodyTooLarge
from loopstack.serving.ingest import REQUEST_TYPE, RESPONSE_TYPE, LoggerIngest
from loopstack.serving.limits import (
    EVENT_INPUT_BYTES,
    EVENT_ITEMS,
    BodyLimit,
    Limits,
    bounded,
    bounded_inputs,
    cut,
    human_bytes,
)
from loopstack.serving.schema import Matrix

SMALL = Limits(
    InputLimits(
        max_body_bytes=2048,
        max_rows=2,
        max_fields=3,
        max_tensor_elements=4,
        max_string_chars=5,
        event_string_chars=8,
    )
)
Tensor = pb.ModelInferRequest.InferInputTensor


def _fp64(name: str, values: list[float], shape: list[int]) -> Any:
    contents = pb.InferTensorContents(fp64_contents=values)
    return Tensor(name=name, datatype="FP64", shape=shape, contents=contents)


def _v2(*tensors: dict[str, Any]) -> bytes:
    return orjson.dumps({"inputs": list(tensors)})


def _t(name: str, data: list[Any], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}


@pytest.mark.parametrize(
    ("decode", "setting"),
    [
        (lambda: decode_v1(orjson.dumps({"instances": [{"a": 1}] * 3}), "m", SMALL), "max_rows"),
        (
            lambda: decode_v1(orjson.dumps({"instances": [dict.fromkeys("abcd", 1)]}), "m", SMALL),
            "max_fields",
        ),
        (lambda: decode_v2(_v2(*(_t(n, [1]) for n in "abcd")), {}, "m", None, SMALL), "max_fields"),
        (
            lambda: decode_v2(_v2(_t("a", [1, 2, 3]), _t("b", [1, 2, 3])), {}, "m", None, SMALL),
            "max_tensor_elements",
        ),
        (
            lambda: decode_grpc(
                pb.ModelInferRequest(model_name="m", inputs=[_fp64("a", [1.0] * 5, [5])]), SMALL
            ),
            "max_tensor_elements",
        ),
        (
            lambda: decode_grpc(
                pb.ModelInferRequest(model_name="m", inputs=[_fp64(n, [1.0], [1]) for n in "abcd"]),
                SMALL,
            ),
            "max_fields",
        ),
    ],
    ids=["v1-rows", "v1-fields", "v2-fields", "v2-values", "grpc-values", "grpc-fields"],
)
def test_decoders_refuse_over_the_limits_before_building_columns(decode: Any, setting: str) -> None:
    with pytest.raises(BadRequest, match=f"serving.limits.{setting}"):
        decode()


@pytest.mark.parametrize(
    ("columns", "rows", "matrix", "parameters", "setting"),
    [
        ({"a": ["abcdef"]}, 1, None, None, "max_string_chars"),
        ({"a": [b"abcdef"]}, 1, None, None, "max_string_chars"),
        ({"abcdef": [1]}, 1, None, None, "max_string_chars"),
        ({}, 1, None, {"explain": "abcdef"}, "max_string_chars"),
        ({}, 1, Matrix("instances", [["abcdef", 1]]), None, "max_string_chars"),
        ({}, 2, Matrix("instances", [[1, 2, 3, 4], [1, 2, 3, 4]]), None, "max_fields"),
        ({"a": [1, 2], "b": [1, 2], "c": [1, 2]}, 2, None, None, "max_tensor_elements"),
        ({"a": [1, 2, 3]}, 3, None, None, "max_rows"),
    ],
)
def test_the_runtime_check_is_the_same_for_every_protocol(
    columns: dict[str, list[Any]],
    rows: int,
    matrix: Matrix | None,
    parameters: dict[str, Any] | None,
    setting: str,
) -> None:
    with pytest.raises(BadRequest, match=f"serving.limits.{setting}") as refused:
        SMALL.check(columns, rows, matrix, parameters)
    assert "raise the limit" in refused.value.message


def test_within_the_limits_passes() -> None:
    SMALL.check({"a": ["abc", "de"], "b": [1.0, math.nan]}, 2, None, {"x": "y"})


@pytest.mark.parametrize(
    ("shape", "accepted"), [([-5], False), ([-1, -1], False), ([-1], True), ([2, -1], True)]
)
def test_grpc_takes_one_minus_one_dimension_and_no_other_negative(
    shape: list[int], accepted: bool
) -> None:
    request = pb.ModelInferRequest(model_name="m", inputs=[_fp64("a", [1.0, 2.0], shape)])
    if accepted:
        assert decode_grpc(request).score.rows in (1, 2)
    else:
        with pytest.raises(BadRequest, match="'shape' must be"):
            decode_grpc(request)


def test_requested_outputs_travel_to_the_runtime_on_every_v2_protocol() -> None:
    body = orjson.dumps({"inputs": [_t("a", [1.0])], "outputs": [{"name": "nope"}]})
    assert decode_v2(body, {}, "m", None).score.outputs == ["nope"]
    asked = [pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")]
    request = pb.ModelInferRequest(model_name="m", inputs=[_fp64("a", [1.0], [1])], outputs=asked)
    assert decode_grpc(request).score.outputs == ["nope"]


def test_events_keep_bounded_copies() -> None:
    assert cut("abcdefghij", 4) == "abcd…[+6 chars]"
    assert bounded({"k": b"\xffbytes-too-long"}, 4) == {"k": "\ufffdbyt…[+11 chars]"}
    many = bounded({"v": list(range(EVENT_ITEMS + 5))}, 8)["v"]
    assert len(many) == EVENT_ITEMS + 1 and many[-1] == "…[+5 values]"
    wide = bounded({f"f{i}": i for i in range(EVENT_ITEMS + 2)}, 8)
    assert len(wide) == EVENT_ITEMS + 1 and wide["…"] == "+2 fields"
    # Many fields of long text: each cut, and the whole no larger than the budget.
    huge = {f"f{i}": ["x" * 10_000] * EVENT_ITEMS for i in range(EVENT_ITEMS)}
    kept = bounded_inputs(huge, 256)
    assert list(kept) == ["_omitted"] and len(orjson.dumps(kept)) < EVENT_INPUT_BYTES
    assert human_bytes(8 * 1024 * 1024) == "8 MiB" and human_bytes(10_500_000) == "10.5 MB"


def _app() -> FastAPI:
    app = FastAPI()

    async def own(request: Request) -> Response:
        try:
            body = await SMALL.read_body(request)
        except BodyTooLarge as exc:
            return Response(orjson.dumps({"error": exc.message, "route": True}), 413)
        return Response(str(len(body)))

    async def theirs(request: Request) -> Response:
        return Response(str(len(await request.body())))

    app.add_api_route("/own", own, methods=["POST"])
    app.add_api_route("/theirs", theirs, methods=["POST"])
    app.add_middleware(BodyLimit, limits=SMALL, exempt=lambda path: path == "/own")
    return app


def _stream(size: int) -> Iterator[bytes]:
    for _ in range(size // 512):
        yield b"x" * 512


@pytest.mark.parametrize("path", ["/own", "/theirs"])
def test_a_body_over_the_limit_is_413_declared_or_streamed(path: str) -> None:
    with TestClient(_app()) as client:
        assert client.post(path, content=b"x" * 2048).text == "2048"
        declared = client.post(path, content=b"x" * 2049)
        streamed = client.post(path, content=_stream(4096))
        assert client.post(path, content=b"x" * 10).text == "10"
    assert declared.status_code == 413 and "is 2.0 kB; the limit is 2 KiB" in declared.text
    assert streamed.status_code == 413 and "exceeds 2 KiB" in streamed.text
    for answer in (declared, streamed):
        assert "serving.limits.max_body_bytes" in answer.json()["error"]
        assert answer.json().get("route", False) is (path == "/own")


class _Recorded:
    """What the ingest hands the event sink (the sink itself is tested with the runtime)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, topic: str, name: str, data: dict[str, Any], **_: Any) -> None:
        self.events.append(data)


def _headers(kind: str, event_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-type": kind,
        "ce-id": event_id,
        "ce-source": "http://localhost/",
        "ce-inferenceservicename": "fraud",
    }


def test_the_logger_ingest_holds_bounded_halves_and_at_most_max_pending() -> None:
    sink = _Recorded()
    ingest = LoggerIngest(sink, pair_timeout_s=3600, chars=8, max_pending=3)  # type: ignore[arg-type]
    try:
        long = orjson.dumps({"instances": [{"city": "c" * 100_000}]})
        assert ingest.accept(_headers(REQUEST_TYPE, "e0"), long) == "waiting"
        for i in range(1, 4):
            ingest.accept(_headers(REQUEST_TYPE, f"e{i}"), orjson.dumps({"instances": [{"a": i}]}))
        # The fourth waiting half pushed the oldest out: logged unpaired, its text cut.
        assert ingest.pending() == 3
        (first,) = sink.events
        assert first["source_id"] == "e0" and first["status"] == "error"
        assert first["inputs"] == {"city": "cccccccc…[+99992 chars]"}
        response = orjson.dumps({"predictions": ["p" * 50]})
        assert ingest.accept(_headers(RESPONSE_TYPE, "e3"), response) == "paired"
        assert sink.events[-1]["outputs"] == {"prediction": "pppppppp…[+42 chars]"}
    finally:
        ingest.close()


def test_deep_wide_and_odd_values_stay_bounded_and_serializable() -> None:
    deep: Any = 1
    for _ in range(2_000):
        deep = [deep]
    kept = bounded({"deep": deep, "big": 2**70, "arr": np.arange(150)}, 8)
    orjson.dumps(kept)
    assert kept["big"] == "11805916…[+14 chars]"
    assert len(kept["arr"]) == EVENT_ITEMS + 1 and kept["arr"][-1] == "…[+50 values]"
    assert "…[nested]" in orjson.dumps(kept).decode()
