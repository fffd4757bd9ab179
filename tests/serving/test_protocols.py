"""A real inference server through v1 REST, v2 REST and gRPC, with the official clients.

Each answer carries the prediction, model, version and prediction id; the logged event carries
what the caller saw (and the features the server fetched when an entity key was sent).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import to_http_parameters

from tests.triton_client import triton_calls

from .conftest import BIKE, BIKE_FEATURES, CREDIT, Served, bike_full_row, bike_row

pytestmark = pytest.mark.integration


def _v2_inputs(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "shape": [1],
            "data": [v],
        }
        for k, v in row.items()
    ]


def test_v1_with_entity_key_fetches_features_and_logs_them(served: Served) -> None:
    body = {"instances": [{**bike_row(), "city_id": "dc"}]}
    answer = httpx.post(
        f"{served.rest}/v1/models/{BIKE}:predict", json=body, headers={"x-request-id": "req-v1"}
    )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["model_name"] == BIKE and got["model_version"] == served.versions["v1"]
    assert got["route"] == "champion" and len(got["prediction_ids"]) == 1
    event = served.events({got["id"]})[got["id"]]
    data = event["data"]
    assert event["correlationid"] == "req-v1"
    assert data["outputs"]["prediction"] == pytest.approx(got["predictions"][0])
    assert data["entity_key"] == {"city_id": "dc"}
    assert set(data["features"]["values"]) == set(BIKE_FEATURES)
    assert data["features"]["feature_service"] == "bike_demand_v1"
    # The inputs the model saw: request fields plus the fetched features.
    assert data["inputs"]["bikers_mean_7d"] == pytest.approx(
        data["features"]["values"]["bikers_mean_7d"]
    )
    assert (
        data["status"] == "ok"
        and data["protocol"] == "v1"
        and data["version"] == served.versions["v1"]
    )


def test_v1_classifier_answers_probabilities(served: Served) -> None:
    body = {"instances": [{"customer_id": 8077}, {"customer_id": 1109}]}
    got = httpx.post(f"{served.rest}/v1/models/{CREDIT}:predict", json=body).json()
    assert got["classes"] == [0, 1] and len(got["probabilities"]) == 2
    assert all(sum(p) == pytest.approx(1) for p in got["probabilities"])
    events = served.events(set(got["prediction_ids"]))
    first = events[got["prediction_ids"][0]]["data"]
    assert first["outputs"]["probabilities"]["1"] == pytest.approx(got["probabilities"][0][1])
    assert first["inputs"]["income"] == "***" and first["features"]["values"]["income"] == "***"


def test_v2_rest_without_entity_key(served: Served) -> None:
    body = {"id": "caller-1", "inputs": _v2_inputs(bike_full_row())}
    answer = httpx.post(f"{served.rest}/v2/models/{BIKE}/infer", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["model_version"] == served.versions["v1"]
    assert got["id"] == "caller-1"  # echoed, as the OIP requires
    pid = got["parameters"]["prediction_id"]
    prediction = got["outputs"][0]
    assert prediction["name"] == "prediction" and prediction["shape"] == [1]
    data = served.events({pid})[pid]["data"]
    assert data["outputs"]["prediction"] == pytest.approx(prediction["data"][0])
    assert "features" not in data and data["request_id"] == "caller-1"


def test_v1_every_feature_with_the_entity_key_is_used_as_sent_and_the_key_logged(
    served: Served,
) -> None:
    # An app that computes its features itself still names the entity, so its outcomes can
    # become training labels of that entity.
    row = {**bike_full_row(), "bikers_last_hour": 7.0}
    body = {"instances": [{**row, "city_id": "dc"}]}
    answer = httpx.post(f"{served.rest}/v1/models/{BIKE}:predict", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    data = served.events({got["id"]})[got["id"]]["data"]
    assert data["entity_key"] == {"city_id": "dc"} and "features" not in data
    assert data["inputs"]["bikers_last_hour"] == 7.0  # not the online store's value
    without_key = httpx.post(
        f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [row]}
    ).json()
    assert without_key["predictions"] == pytest.approx(got["predictions"])


def test_v2_metadata_lists_the_signature_tensors(served: Served) -> None:
    meta = httpx.get(f"{served.rest}/v2/models/{BIKE}").json()
    names = [t["name"] for t in meta["inputs"]]
    assert set(names) == set(bike_full_row())
    assert {t["name"]: t["datatype"] for t in meta["inputs"]}["weathersit"] == "BYTES"
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    credit = httpx.get(f"{served.rest}/v2/models/{CREDIT}").json()
    assert credit["outputs"][1] == {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}
    assert httpx.get(f"{served.rest}/v2/models/{BIKE}/ready").json()["ready"] is True
    assert httpx.get(f"{served.rest}/v2").json()["name"]


def _kserve_request(row: dict[str, Any], parameters: dict[str, Any] | None = None) -> InferRequest:
    inputs = []
    for name, value in row.items():
        tensor = InferInput(name, [1], "BYTES" if isinstance(value, str) else "FP64")
        tensor.set_data_from_numpy(
            np.array([value], dtype=object if isinstance(value, str) else np.float64)
        )
        inputs.append(tensor)
    return InferRequest(model_name=BIKE, infer_inputs=inputs, parameters=parameters)


def test_kserve_rest_and_grpc_clients(served: Served) -> None:
    async def run() -> tuple[Any, Any]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        grpc = InferenceGRPCClient(served.grpc)
        try:
            via_rest = await rest.infer(
                served.rest, _kserve_request(bike_row(), {"city_id": "dc"}), model_name=BIKE
            )
            via_grpc = await grpc.infer(_kserve_request(bike_row(), {"city_id": "dc"}))
            return via_rest, via_grpc
        finally:
            await rest.close()
            await grpc.close()

    via_rest, via_grpc = asyncio.run(run())
    for response in (via_rest, via_grpc):
        parameters = to_http_parameters(response.parameters)
        assert parameters["model_version"] == served.versions["v1"]
        pid = parameters["prediction_id"]
        value = response.outputs[0].as_numpy()[0]
        data = served.events({pid})[pid]["data"]
        assert data["outputs"]["prediction"] == pytest.approx(value)
        assert data["entity_key"] == {"city_id": "dc"}
    assert via_grpc.model_version == served.versions["v1"]
    assert served.events({via_grpc.id})[via_grpc.id]["data"]["protocol"] == "v2-grpc"


def test_tritonclient_http_and_grpc(served: Served) -> None:
    infer = {"kind": "infer", "model": BIKE, "inputs": _v2_inputs(bike_row()),
             "parameters": {"city_id": "dc"}}  # fmt: skip
    ready = {"kind": "model_ready", "model": BIKE}
    http_ready, grpc_ready, meta, http_answer, grpc_answer, grpc_error = triton_calls(
        served.rest, served.grpc,
        [{**ready, "protocol": "http"}, {**ready, "protocol": "grpc"},
         {"kind": "model_metadata", "protocol": "grpc", "model": BIKE},
         {**infer, "protocol": "http"}, {**infer, "protocol": "grpc"},
         {**infer, "protocol": "grpc", "inputs": _v2_inputs({"nonsense": 1.0})}],
    )  # fmt: skip
    assert [http_ready["ready"], grpc_ready["ready"]] == [True, True]
    assert {t["name"] for t in meta["metadata"]["inputs"]} == set(bike_full_row())
    assert http_answer["parameters"]["model_version"] == served.versions["v1"]
    assert grpc_answer["model_version"] == served.versions["v1"]
    events = served.events({http_answer["id"], grpc_answer["id"]})
    for answer in (http_answer, grpc_answer):
        data = events[answer["id"]]["data"]
        assert data["outputs"]["prediction"] == pytest.approx(answer["outputs"]["prediction"][0])
        assert data["entity_key"] == {"city_id": "dc"}
    assert grpc_error["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "nonsense" in grpc_error["error"]["message"]
