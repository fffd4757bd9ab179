"""Bad input answers 400 with a reason, unknown model 404, not ready 503 with Retry-After.

Every failure is a `prediction.v1` event with status `error`, counted in the metrics, and the
connection stays usable after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from loopstack.serving.traffic import TrafficSplit

from .conftest import BIKE, CREDIT, Served, bike_full_row, dumps, wait_events

pytestmark = pytest.mark.integration


def _tensors(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "shape": [1],
            "data": [v],
        }
        for k, v in row.items()
    ]


def _without(row: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != name}


V1 = f"/v1/models/{BIKE}:predict"
V2 = f"/v2/models/{BIKE}/infer"
CASES = [
    ("v1 not json", V1, b"{not json", 400, "not valid JSON"),
    ("v1 no instances", V1, dumps({"rows": []}).encode(), 400, "instances"),
    (
        "v1 list row of the wrong width",
        V1,
        dumps({"instances": [[1, 2]]}).encode(),
        400,
        "has 2 value(s) per row; the model reads 15, in this order",
    ),
    (
        "v1 missing field",
        V1,
        dumps({"instances": [_without(bike_full_row(), "temp")]}).encode(),
        400,
        "missing field(s) temp",
    ),
    (
        "v1 extra field",
        V1,
        dumps({"instances": [{**bike_full_row(), "colour": "red"}]}).encode(),
        400,
        "unknown field(s) colour",
    ),
    (
        "v1 wrong dtype",
        V1,
        dumps({"instances": [{**bike_full_row(), "temp": "warm"}]}).encode(),
        400,
        "'temp' expects a number",
    ),
    ("v2 not json", V2, b"\x00\x01", 400, "not valid JSON"),
    (
        "v2 wrong shape",
        V2,
        dumps({"inputs": [{**_tensors(bike_full_row())[0], "shape": [2]}]}).encode(),
        400,
        "needs 2 values",
    ),
    (
        "v2 wrong datatype",
        V2,
        dumps(
            {
                "inputs": [
                    {**t, "datatype": "BYTES", "data": ["x"]} if t["name"] == "temp" else t
                    for t in _tensors(bike_full_row())
                ]
            }
        ).encode(),
        400,
        "datatype BYTES",
    ),
    (
        "v2 missing input",
        V2,
        dumps({"inputs": _tensors(_without(bike_full_row(), "hum"))}).encode(),
        400,
        "missing field(s) hum",
    ),
    (
        "v2 3-d tensor",
        V2,
        dumps({"inputs": [{**_tensors(bike_full_row())[0], "shape": [1, 1, 1]}]}).encode(),
        400,
        "one column per input",
    ),
    (
        "unknown model v1",
        "/v1/models/nope:predict",
        dumps({"instances": [{"a": 1}]}).encode(),
        404,
        "not served here",
    ),
    (
        "unknown model v2",
        "/v2/models/nope/infer",
        dumps({"inputs": _tensors({"a": 1.0})}).encode(),
        404,
        "not served here",
    ),
    (
        "unknown entity",
        f"/v1/models/{CREDIT}:predict",
        dumps({"instances": [{"customer_id": 987654}]}).encode(),
        404,
        "987654",
    ),
    (
        "bad entity key type",
        f"/v1/models/{CREDIT}:predict",
        dumps({"instances": [{"customer_id": "abc"}]}).encode(),
        400,
        "must be an integer",
    ),
    (
        "feature sent with entity",
        f"/v1/models/{CREDIT}:predict",
        dumps({"instances": [{"customer_id": 8077, "income": 1.0}]}).encode(),
        400,
        "come from the feature store",
    ),
]


def test_bad_requests_get_a_reason_and_a_failed_event(served: Served) -> None:
    ids: dict[str, tuple[int, str]] = {}
    with httpx.Client(base_url=served.rest) as client:
        for name, path, body, status, reason in CASES:
            request_id = f"bad-{uuid.uuid4()}"
            answer = client.post(
                path,
                content=body,
                headers={"x-request-id": request_id, "content-type": "application/json"},
            )
            assert answer.status_code == status, (name, answer.text)
            assert reason in answer.json()["error"], (name, answer.json())
            ids[request_id] = (status, reason)
            # The same connection keeps working after every error.
            good = client.post(V1, json={"instances": [bike_full_row()]})
            assert good.status_code == 200, (name, good.text)
    events = wait_events(served.settings, lambda e: e.get("correlationid") in ids, len(ids))
    for event in events.values():
        status, reason = ids[event["correlationid"]]
        assert event["data"]["status"] == "error" and event["data"]["error"].startswith(str(status))
        assert reason in event["data"]["error"]
    metrics = httpx.get(f"{served.rest}/metrics").text
    assert (
        'loopstack_serving_requests_total{model="serving-bike",protocol="v1",route="champion",status="400"'
        in metrics
    )


def test_grpc_errors_map_to_status_codes(served: Served) -> None:
    def request(model: str, row: dict[str, Any]) -> InferRequest:
        inputs = []
        for name, value in row.items():
            tensor = InferInput(name, [1], "BYTES" if isinstance(value, str) else "FP64")
            tensor.set_data_from_numpy(
                np.array([value], dtype=object if isinstance(value, str) else np.float64)
            )
            inputs.append(tensor)
        return InferRequest(model_name=model, infer_inputs=inputs)

    async def codes() -> list[Any]:
        client = InferenceGRPCClient(served.grpc)
        found = []
        try:
            for model, row in ((BIKE, {**bike_full_row(), "colour": "red"}), ("nope", {"a": 1.0})):
                try:
                    await client.infer(request(model, row))
                except grpc.aio.AioRpcError as exc:
                    found.append((exc.code(), exc.details()))
            ok = await client.infer(request(BIKE, bike_full_row()))  # the channel still works
            found.append(ok.model_name)
        finally:
            await client.close()
        return found

    (bad_code, bad_detail), (missing_code, missing_detail), ok = asyncio.run(codes())
    assert bad_code == grpc.StatusCode.INVALID_ARGUMENT and "colour" in bad_detail
    assert missing_code == grpc.StatusCode.NOT_FOUND and "nope" in missing_detail
    assert ok == BIKE


def test_grpc_undecodable_requests_are_logged_and_every_rpc_maps_errors(served: Served) -> None:
    """No interceptor maps errors: inference decodes and answers itself (a request it cannot
    decode is a failed prediction, correlated by `x-request-id`), the other RPCs keep codes."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    request_id = f"bad-grpc-{uuid.uuid4()}"
    both = pb.ModelInferRequest(
        model_name=BIKE,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="temp",
                datatype="FP64",
                shape=[1],
                contents=pb.InferTensorContents(fp64_contents=[0.5]),
            )
        ],
        raw_input_contents=[np.array([0.5]).tobytes()],
    )
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as bad:
            stub.ModelInfer(both, metadata=[("x-request-id", request_id)])
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
        assert stub.ModelReady(pb.ModelReadyRequest(name=BIKE)).ready
        assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents and raw_input_contents" in (bad.value.details() or "")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (unknown.value.details() or "")
    events = wait_events(served.settings, lambda e: e.get("correlationid") == request_id, 1)
    data = next(iter(events.values()))["data"]
    assert (data["status"], data["protocol"], data["model"]) == ("error", "v2-grpc", BIKE)
    assert data["error"].startswith("400 BadRequest")


def test_a_model_whose_versions_cannot_load_is_not_ready(served: Served) -> None:
    from loopstack.serving.traffic import TrafficStore

    store = TrafficStore(served.settings.state_path / "serving" / "traffic.db")
    store.set(TrafficSplit(model="serving-ghost", champion="999"))
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline:
            answer = httpx.post(
                f"{served.rest}/v1/models/serving-ghost:predict", json={"instances": [{"a": 1}]}
            )
            if answer.status_code == 503 and "failed to load" in answer.json()["error"]:
                break
            time.sleep(0.2)
        assert answer is not None and answer.status_code == 503, answer.text if answer else None
        assert answer.headers["retry-after"] == "1"
        ready = httpx.get(f"{served.rest}/v2/models/serving-ghost/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    finally:  # an unloadable deployment keeps the shared server unready
        store.remove("serving-ghost")
