"""Every common tabular input form, through the official clients against a real server.

A numeric model (`serving-numeric`: balance and income, `income` nullable in its spec) takes one
`[N, F]` tensor in the order its v2 metadata gives (tritonclient HTTP binary and gRPC, KServe's
REST and gRPC clients) and v1 rows as lists, answering what one tensor per column answers. A v2
answer echoes the request's id; a null, NaN or infinite number is refused naming the field
(400 / INVALID_ARGUMENT) unless the field is nullable; a string entity key travels as a gRPC
BYTES tensor.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import mlflow
import numpy as np
import pytest
import yaml
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import to_http_parameters
from loopstack.serving.traffic import TrafficSplit
from mlflow.tracking import MlflowClient
from sklearn.ensemble import HistGradientBoostingClassifier

from tests.triton_client import triton_calls

from .conftest import BIKE, CREDIT, Served, _register, bike_row, credit_frame

pytestmark = pytest.mark.integration

NUMERIC = "serving-numeric"
COLUMNS = ["balance", "income"]
ROWS = [[774.07, 46082.04], [1800.5, 12000.0]]


@pytest.fixture(scope="module")
def numeric(served: Served) -> Iterator[str]:
    """A numeric-only classifier served beside the others; its spec declares `income` nullable."""
    models = served.settings.models_dir
    spec = yaml.safe_load((models / CREDIT / "model.yaml").read_text())
    spec.update(name=NUMERIC, nullable_fields=["income"], segments=[], sensitive_fields=[])
    (models / NUMERIC).mkdir(exist_ok=True)
    (models / NUMERIC / "model.yaml").write_text(yaml.safe_dump(spec))
    frame = credit_frame()
    x = frame[COLUMNS]
    model = HistGradientBoostingClassifier(max_iter=20).fit(x, frame["default"])
    mlflow.set_tracking_uri(served.settings.mlflow_tracking_uri)
    client = MlflowClient(served.settings.mlflow_tracking_uri)
    version = _register(client, NUMERIC, model, x, model.predict_proba(x.head(5))[:, 1])
    served.deploy(TrafficSplit(model=NUMERIC, champion=version), timeout=240)
    yield version


def _columns(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": "FP64", "shape": [len(rows)], "data": [r[j] for r in rows]}
        for j, name in enumerate(COLUMNS)
    ]


def _matrix(rows: list[list[Any]], datatype: str = "FP32") -> dict[str, Any]:
    return {"name": "input-0", "datatype": datatype, "shape": [len(rows), len(COLUMNS)],
            "data": [v for r in rows for v in r]}  # fmt: skip


def _infer(served: Served, body: dict[str, Any], model: str = NUMERIC) -> httpx.Response:
    return httpx.post(f"{served.rest}/v2/models/{model}/infer", json=body, timeout=30)


def _probabilities(answer: dict[str, Any]) -> list[float]:
    return next(o["data"] for o in answer["outputs"] if o["name"] == "probabilities")


def test_metadata_documents_the_column_order_of_the_matrix(served: Served, numeric: str) -> None:
    meta = httpx.get(f"{served.rest}/v2/models/{NUMERIC}").json()
    assert [t["name"] for t in meta["inputs"]] == COLUMNS
    assert meta["parameters"]["input_order"] == ",".join(COLUMNS)
    assert "[-1, 2]" in meta["parameters"]["input_matrix"]
    credit = httpx.get(f"{served.rest}/v2/models/{CREDIT}").json()["parameters"]
    assert "send one tensor per input" in credit["input_matrix"]


def test_one_matrix_and_v1_list_rows_answer_what_columns_answer(
    served: Served, numeric: str
) -> None:
    by_column = _infer(served, {"inputs": _columns(ROWS)})
    assert by_column.status_code == 200, by_column.text
    expected = _probabilities(by_column.json())
    for datatype in ("FP32", "FP64"):
        got = _infer(served, {"id": f"m-{datatype}", "inputs": [_matrix(ROWS, datatype)]})
        assert got.status_code == 200, got.text
        assert got.json()["id"] == f"m-{datatype}"
        assert _probabilities(got.json()) == pytest.approx(expected, abs=1e-4)
    integers = [[int(v) for v in row] for row in ROWS]
    assert _infer(served, {"inputs": [_matrix(integers, "INT64")]}).status_code == 200
    v1 = httpx.post(f"{served.rest}/v1/models/{NUMERIC}:predict", json={"instances": ROWS})
    assert v1.status_code == 200, v1.text
    flat = [p for row in v1.json()["probabilities"] for p in row]
    assert flat == pytest.approx(expected)
    # Mixed-type models take v1 list rows too (JSON carries strings and numbers alike).
    credit = httpx.post(
        f"{served.rest}/v1/models/{CREDIT}:predict",
        json={"instances": [["No", 774.07, 46082.04]]},
    )
    objects = httpx.post(
        f"{served.rest}/v1/models/{CREDIT}:predict",
        json={"instances": [{"student": "No", "balance": 774.07, "income": 46082.04}]},
    )
    assert credit.status_code == 200, credit.text
    assert credit.json()["probabilities"][0] == pytest.approx(objects.json()["probabilities"][0])


def test_wrong_matrices_are_refused_with_the_order(served: Served, numeric: str) -> None:
    narrow = _infer(served, {"inputs": [{**_matrix([[1.0, 2.0]]), "shape": [2, 1]}]})
    assert narrow.status_code == 400  # [N, 1] is one column named input-0: unknown
    wide = _infer(served, {"inputs": [_matrix([[1.0, 2.0, 3.0]]) | {"shape": [1, 3]}]})
    assert wide.status_code == 400 and "in this order: balance, income" in wide.json()["error"]
    mixed = _infer(served, {"inputs": [_matrix([[1.0, 2.0, 3.0]]) | {"shape": [1, 3]}]}, CREDIT)
    assert mixed.status_code == 400 and "student" in mixed.json()["error"]


def test_null_nan_and_inf_are_refused_naming_the_field_unless_nullable(
    served: Served, numeric: str
) -> None:
    null_balance = _infer(served, {"inputs": _columns([[None, 1.0]])})
    assert null_balance.status_code == 400
    assert "'balance' row 0 is null" in null_balance.json()["error"]
    null_v1 = httpx.post(
        f"{served.rest}/v1/models/{NUMERIC}:predict",
        json={"instances": [{"balance": 1.0, "income": 2.0}, {"balance": None, "income": 2.0}]},
    )
    assert null_v1.status_code == 400 and "'balance' row 1 is null" in null_v1.json()["error"]
    in_matrix = _infer(served, {"inputs": [_matrix([[None, 1.0]])]})
    assert in_matrix.status_code == 400 and "'balance' row 0 is null" in in_matrix.json()["error"]
    # `income` is nullable: the model gets NaN (gradient boosting routes it natively).
    for body in ({"inputs": _columns([[774.07, None]])}, {"inputs": [_matrix([[774.07, None]])]}):
        answer = _infer(served, body)
        assert answer.status_code == 200, answer.text


def test_kserve_clients_send_the_matrix_and_get_their_id_back(served: Served, numeric: str) -> None:
    def request(rows: list[list[float]], request_id: str) -> InferRequest:
        tensor = InferInput("input-0", [len(rows), len(COLUMNS)], "FP64")
        tensor.set_data_from_numpy(np.array(rows, dtype=np.float64))
        return InferRequest(model_name=NUMERIC, infer_inputs=[tensor], request_id=request_id)

    async def run() -> tuple[Any, Any, Any, Any]:
        rest = InferenceRESTClient(RESTConfig(protocol="v2"))
        client = InferenceGRPCClient(served.grpc)
        try:
            via_rest = await rest.infer(served.rest, request(ROWS, "k-rest"), model_name=NUMERIC)
            via_grpc = await client.infer(request(ROWS, "k-grpc"))
            failures = []
            for bad in ([[math.nan, 1.0]], [[1.0, math.inf]]):
                try:
                    await client.infer(request(bad, "k-bad"))
                except grpc.aio.AioRpcError as exc:
                    failures.append((exc.code(), exc.details()))
            nullable = await client.infer(request([[774.07, math.nan]], "k-null"))
            return via_rest, via_grpc, failures, nullable
        finally:
            await rest.close()
            await client.close()

    via_rest, via_grpc, failures, nullable = asyncio.run(run())
    assert (via_rest.id, via_grpc.id, nullable.id) == ("k-rest", "k-grpc", "k-null")
    for response in (via_rest, via_grpc):
        parameters = to_http_parameters(response.parameters)
        assert parameters["prediction_id"] != response.id
        pid = parameters["prediction_ids"].split(",")[0]  # the first row's
        event = served.events({pid})[pid]["data"]
        assert event["request_id"] == response.id
        assert event["inputs"]["balance"] == pytest.approx(ROWS[0][0])
    (nan_code, nan_detail), (inf_code, inf_detail) = failures
    assert nan_code == inf_code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'balance' row 0 is NaN" in nan_detail and "'income' row 0 is inf" in inf_detail


def test_grpc_entity_key_as_a_bytes_tensor(served: Served) -> None:
    def request(with_key: bool) -> InferRequest:
        inputs = []
        row = {**bike_row(), "city_id": "dc"} if with_key else bike_row()
        for name, value in row.items():
            text = isinstance(value, str)
            tensor = InferInput(name, [1], "BYTES" if text else "FP64")
            tensor.set_data_from_numpy(np.array([value], dtype=object if text else np.float64))
            inputs.append(tensor)
        parameters = None if with_key else {"city_id": "dc"}
        return InferRequest(model_name=BIKE, infer_inputs=inputs, parameters=parameters)

    async def run() -> tuple[Any, Any]:
        client = InferenceGRPCClient(served.grpc)
        try:
            return await client.infer(request(True)), await client.infer(request(False))
        finally:
            await client.close()

    as_tensor, as_parameter = asyncio.run(run())
    values = [r.outputs[0].as_numpy()[0] for r in (as_tensor, as_parameter)]
    assert values[0] == pytest.approx(values[1])
    pid = to_http_parameters(as_tensor.parameters)["prediction_id"]
    assert served.events({pid})[pid]["data"]["entity_key"] == {"city_id": "dc"}


def test_tritonclient_http_and_grpc_send_the_matrix(served: Served, numeric: str) -> None:
    matrix = {"name": "input-0", "datatype": "FP32", "shape": [2, 2],
              "data": [v for row in ROWS for v in row]}  # fmt: skip
    nan = {**matrix, "shape": [1, 2], "data": [math.nan, 1.0]}
    infer = {"kind": "infer", "model": NUMERIC}
    calls: list[dict[str, Any]] = [
        {**infer, "protocol": protocol, "id": f"t-{protocol}", "inputs": [tensor]}
        for tensor in (matrix, nan)
        for protocol in ("http", "grpc")
    ]
    key = [{"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1],
            "data": [v]} for k, v in {**bike_row(), "city_id": "dc"}.items()]  # fmt: skip
    calls.append({"kind": "infer", "protocol": "grpc", "model": BIKE, "id": "t-key",
                  "inputs": key})  # fmt: skip
    http_ok, grpc_ok, http_nan, grpc_nan, with_key = triton_calls(served.rest, served.grpc, calls)
    assert (http_ok["id"], grpc_ok["id"], with_key["id"]) == ("t-http", "t-grpc", "t-key")
    assert http_ok["outputs"]["probabilities"] == pytest.approx(grpc_ok["outputs"]["probabilities"])
    assert len(http_ok["outputs"]["prediction"]) == 2
    assert (
        http_nan["error"]["status"] == "400"
        and "'balance' row 0 is NaN" in (http_nan["error"]["message"])
    )
    assert grpc_nan["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "'balance' row 0 is NaN" in grpc_nan["error"]["message"]
