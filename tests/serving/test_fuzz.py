"""The inference server's OIP v2 REST endpoints under schemathesis, over real HTTP: generated
requests (valid and invalid per the server's own OpenAPI) never get a 5xx, every 4xx says why,
and the server keeps answering. Hostile values no schema-driven generator sends (huge text and
arrays, NaN, infinities, numbers beyond 64 bits, negative shapes) get no 5xx on v1, v2 REST and
gRPC either."""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .conftest import BIKE, CREDIT, Served, bike_full_row

pytestmark = pytest.mark.integration

MODELS = (BIKE, CREDIT, "no-such-model")


def test_generated_v2_requests_get_no_5xx_and_every_4xx_has_a_reason(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.rest}/openapi.json")
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.path.startswith("/v2/models/{model_name}")
    ]
    assert {op.path for op in operations} >= {
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}",
    }
    seen: dict[int, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode), model=st.sampled_from(MODELS))
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)  # fmt: skip
            def answers_sensibly(case: Any, model: str) -> None:
                case.path_parameters = {**(case.path_parameters or {}), "model_name": model}
                response = case.call(base_url=served.rest, timeout=30)
                where = f"{case.method} {case.formatted_path}: {response.text[:300]}"
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, where
                if response.status_code >= 400:
                    error = response.json().get("error")
                    assert isinstance(error, str) and error.strip(), where

            try:
                answers_sensibly()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise  # only a bodiless operation may have no invalid request to make
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0 and seen.get(404, 0) > 0, seen
    # Still serving after all of that.
    ready = httpx.get(f"{served.rest}/v2/models/{CREDIT}/ready", verify=served.verify)
    assert ready.status_code == 200


# --- hostile values: huge text and arrays, non-finite and out-of-range numbers ----------------
HOSTILE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 2**63, -(2**64), None]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.builds(
        lambda n, c: c * n,
        st.sampled_from([4_096, 4_097, 100_000, 9 * 2**20]),
        st.sampled_from("xé€"),
    ),
    st.lists(st.floats(allow_nan=True), max_size=4),
    st.builds(lambda n: [0.5] * n, st.sampled_from([10_001, 1_000_001])),
)
"""Values no schema-driven generator sends: each alone must be a 4xx with a reason, never a 5xx."""


@st.composite
def _hostile_row(draw: Any, model: str) -> dict[str, Any]:
    """A valid row of the model with some fields replaced by hostile values (or added)."""
    row: dict[str, Any] = bike_full_row() if model == BIKE else {"customer_id": 8077}
    names = draw(st.lists(st.sampled_from([*row, "extra"]), min_size=1, max_size=3, unique=True))
    for name in names:
        row[name] = draw(HOSTILE)
    return row


def _v2_body(row: dict[str, Any], shape: list[int] | None, datatype: str | None) -> bytes:
    tensors = []
    for name, value in row.items():
        data = value if isinstance(value, list) else [value]
        declared = datatype or ("BYTES" if isinstance(value, str) else "FP64")
        tensors.append(
            {"name": name, "datatype": declared, "shape": shape or [len(data)], "data": data}
        )
    return json.dumps({"inputs": tensors}).encode()  # NaN and Infinity as Python writes them


def test_hostile_values_get_no_5xx_on_any_protocol(served: Served) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    seen: dict[str, int] = {}
    options = [("grpc.max_send_message_length", 64 * 2**20)]
    with (
        httpx.Client(base_url=served.rest, timeout=60, verify=served.verify) as client,
        grpc.insecure_channel(served.grpc, options=options) as channel,
    ):
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)

        @given(
            model=st.sampled_from([BIKE, CREDIT]),
            data=st.data(),
            protocol=st.sampled_from(["v1", "v2", "grpc"]),
            shape=st.none() | st.lists(st.integers(-10, 2**40), min_size=1, max_size=3),
            datatype=st.none() | st.sampled_from(["FP64", "INT64", "BYTES", "BOOL", "FP16", "??"]),
        )
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)  # fmt: skip
        def answers_sensibly(
            model: str, data: Any, protocol: str, shape: list[int] | None, datatype: str | None
        ) -> None:
            row = data.draw(_hostile_row(model))
            if protocol == "grpc":
                code = _grpc_code(stub, pb, model, row, shape)
                seen[code] = seen.get(code, 0) + 1
                assert code not in {"INTERNAL", "UNKNOWN", "UNAVAILABLE"}, (code, _show(row))
                return
            if protocol == "v1":
                path, body = (
                    f"/v1/models/{model}:predict",
                    json.dumps({"instances": [row]}).encode(),
                )
            else:
                path, body = f"/v2/models/{model}/infer", _v2_body(row, shape, datatype)
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1
            where = f"{protocol} {_show(row)}: {response.text[:300]}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert response.json()["error"].strip(), where
                assert len(response.content) < 4096, where  # never echoes the value back

        answers_sensibly()
    assert {"400", "INVALID_ARGUMENT"} <= set(seen), seen
    assert (
        httpx.get(f"{served.rest}/v2/models/{BIKE}/ready", verify=served.verify).status_code == 200
    )


def _grpc_code(stub: Any, pb: Any, model: str, row: dict[str, Any], shape: list[int] | None) -> str:
    tensors = []
    for name, value in row.items():
        values = value if isinstance(value, list) else [value]
        tensor = pb.ModelInferRequest.InferInputTensor(name=name, shape=shape or [len(values)])
        if all(isinstance(v, str) for v in values):
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(v.encode() for v in values)
        elif all(isinstance(v, bool) for v in values):
            tensor.datatype = "BOOL"
            tensor.contents.bool_contents.extend(values)
        elif all(isinstance(v, float | int) and not isinstance(v, bool) for v in values):
            tensor.datatype = "FP64"  # an int beyond 64 bits travels as its float
            tensor.contents.fp64_contents.extend(float(v) for v in values)
        else:  # None, or a mix: nothing gRPC can carry; an empty tensor instead
            tensor.datatype = "FP64"
        tensors.append(tensor)
    try:
        stub.ModelInfer(pb.ModelInferRequest(model_name=model, inputs=tensors), timeout=60)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def _show(row: dict[str, Any]) -> str:
    return {k: (repr(v)[:40] + "…" if len(repr(v)) > 40 else v) for k, v in row.items()}.__repr__()
