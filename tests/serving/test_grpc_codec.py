"""The gRPC codec without a transport: `decode_grpc` / `encode_grpc` read and build the protobuf
directly and must answer what KServe's own `InferRequest.from_grpc` / `InferResponse.to_grpc`
round trip answered (the path they replace), plus the caller mistakes that path let through."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest
from loopstack.serving.codec import (
    V2Request,
    decode_grpc,
    encode_grpc,
    from_infer_request,
    to_infer_response,
)
from loopstack.serving.errors import BadRequest
from loopstack.serving.runtime import ScoreRequest, ScoreResult

Tensor = pb.ModelInferRequest.InferInputTensor
Contents = pb.InferTensorContents


def _request(*inputs: Any, raw: list[bytes] | None = None, **fields: Any) -> Any:
    return pb.ModelInferRequest(
        model_name="m", inputs=list(inputs), raw_input_contents=raw or [], **fields
    )


def _fp64(name: str, values: list[float], shape: list[int] | None = None) -> Any:
    return Tensor(
        name=name,
        datatype="FP64",
        shape=shape or [len(values)],
        contents=Contents(fp64_contents=values),
    )


def _bytes(name: str, values: list[bytes]) -> Any:
    return Tensor(
        name=name, datatype="BYTES", shape=[len(values)], contents=Contents(bytes_contents=values)
    )


def _as_kserve(request: Any) -> ScoreRequest:
    """What the replaced path decoded (KServe's objects, then numpy)."""
    return from_infer_request(InferRequest.from_grpc(request), "v2-grpc")


def _same(ours: ScoreRequest, theirs: ScoreRequest) -> None:
    for name in ("model", "columns", "rows", "protocol", "parameters", "version", "request_id"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.datatypes == theirs.datatypes


ONE_ROW = _request(
    _bytes("student", [b"No"]),
    _fp64("balance", [774.07]),
    Tensor(name="age", datatype="INT64", shape=[1, 1], contents=Contents(int64_contents=[41])),
    Tensor(name="member", datatype="BOOL", shape=[1], contents=Contents(bool_contents=[True])),
    Tensor(name="score", datatype="FP32", shape=[1], contents=Contents(fp32_contents=[0.1])),
    id="req-1",
    model_version="3",
    parameters={"explain": pb.InferParameter(bool_param=True)},
    outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="prediction")],
)


@pytest.mark.parametrize(
    "request_",
    [
        ONE_ROW,
        _request(_fp64("a", [1.0, 2.0, 3.0]), _bytes("b", [b"x", b"y", b"z"])),
        _request(_fp64("a", [1.0, 2.0], shape=[-1])),
        _request(
            Tensor(name="a", datatype="FP64", shape=[2]),
            Tensor(name="b", datatype="BYTES", shape=[2]),
            raw=[
                np.array([1.5, 2.5]).tobytes(),
                b"".join(struct.pack("<I", len(s)) + s for s in (b"yes", b"no")),
            ],
        ),
    ],
    ids=["one-row-typed", "three-rows", "shape-minus-one", "raw-contents"],
)
def test_decode_reads_what_kserves_round_trip_read(request_: Any) -> None:
    decoded = decode_grpc(request_)
    _same(decoded.score, _as_kserve(request_))
    assert decoded.binary == bool(request_.raw_input_contents)


def test_decode_keeps_id_version_parameters_and_requested_outputs() -> None:
    decoded = decode_grpc(ONE_ROW)
    score = decoded.score
    assert (score.model, score.rows, score.protocol) == ("m", 1, "v2-grpc")
    assert (score.request_id, score.version, score.parameters) == ("req-1", "3", {"explain": True})
    assert score.columns["student"] == [b"No"] and score.columns["age"] == [41]
    assert score.datatypes["balance"] == "FP64" and decoded.requested == ["prediction"]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (_request(_fp64("a", [1.0]), raw=[b"x", b"y"]), "1 input(s) but 2 raw_input_contents"),
        (_request(_fp64("a", [1.0]), raw=[np.array([1.0]).tobytes()]), "contents and raw"),
        (_request(Tensor(name="a", datatype="FP16", shape=[1])), "cannot travel in contents"),
        (_request(Tensor(name="a", datatype="NOPE", shape=[1]), raw=[b"\0"]), "unknown datatype"),
        (_request(_fp64("a", [1.0], shape=[2])), "needs 2 values, got 1"),
        (_request(_fp64("a", [1.0, 2.0], shape=[1, 1, 2])), "one column per input"),
        (
            _request(_fp64("a", [1.0, 2.0], shape=[1, 2]), _fp64("b", [1.0, 2.0], shape=[1, 2])),
            "are both",
        ),
        (
            _request(
                Tensor(
                    name="x",
                    datatype="BYTES",
                    shape=[1, 2],
                    contents=Contents(bytes_contents=[b"No", b"1.5"]),
                )
            ),
            "must be numeric",
        ),
        (_request(_fp64("x", [1.0, 2.0], shape=[1, 2]), _fp64("b", [1.0, 2.0])), "have 1"),
        (_request(_fp64("a", [1.0]), _fp64("a", [2.0])), "sent twice"),
        (_request(_fp64("a", [1.0]), _fp64("b", [1.0, 2.0])), "other inputs have 1"),
        (
            _request(
                Tensor(name="a", datatype="INT8", shape=[1], contents=Contents(int_contents=[300]))
            ),
            "cannot read its data",
        ),
        (_request(_fp64("a", [1.0, 2.0, 3.0], shape=[-1, 2])), "cannot read its data"),
    ],
)
def test_decode_rejects_malformed_tensors_with_the_reason(request_: Any, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_grpc(request_)


RESULTS = {
    "classifier": ScoreResult(
        "m",
        "2",
        "canary",
        "p",
        ["p-0", "p-1"],
        [0, 1],
        [[0.75, 0.25], [0.25, 0.75]],
        [0, 1],
        "INT64",
    ),
    "labels": ScoreResult(
        "m", "2", "champion", "p", ["p"], ["yes"], [[0.5, 0.5]], ["no", "yes"], "BYTES"
    ),
    "regressor": ScoreResult(
        "m", "1", "champion", "p", ["p-0", "p-1"], [1.5, 2.5], None, None, "FP64"
    ),
    "reviewed": ScoreResult(
        "m",
        "1",
        "champion",
        "p",
        ["p-0", "p-1"],
        [0, 1],
        [[0.5, 0.5], [0.9, 0.1]],
        [0, 1],
        "INT64",
        explanations=[{"a": 1}, {"a": 2}],
        needs_review=[True, False],
    ),
}


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
@pytest.mark.parametrize("requested", [None, ["probabilities"], ["prediction", "nope"]])
@pytest.mark.parametrize("name", list(RESULTS))
def test_encode_builds_what_kserves_to_grpc_built(
    name: str, requested: list[str] | None, raw: bool
) -> None:
    result = RESULTS[name]
    ours = encode_grpc(result, V2Request(ScoreRequest("m", {}, 1, "v2-grpc"), raw, requested))
    theirs = to_infer_response(result, requested, binary=raw).to_grpc()
    # Raw outputs each say their size (KServe's path dropped it where it set `classes`).
    sizes = [o.parameters["binary_data_size"].int64_param for o in ours.outputs if raw]
    assert sizes == [len(data) for data in ours.raw_output_contents]
    for output in (*ours.outputs, *theirs.outputs):
        output.parameters.pop("binary_data_size", None)
    assert ours == theirs


def test_encode_answers_the_prediction_id_version_and_route() -> None:
    request = V2Request(ScoreRequest("m", {}, 2, "v2-grpc"), False, None)
    response = encode_grpc(RESULTS["classifier"], request)
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "p")
    parameters = {k: v.string_param for k, v in response.parameters.items()}
    assert parameters == {
        "prediction_id": "p",
        "prediction_ids": "p-0,p-1",
        "model_version": "2",
        "route": "canary",
    }
    probabilities = response.outputs[1]
    assert list(probabilities.shape) == [2, 2]
    assert probabilities.parameters["classes"].string_param == "0,1"


def test_encode_writes_narrow_regression_datatypes_kserve_refused() -> None:
    """KServe's path needed a numpy dtype equal to the datatype: an FP32 regressor's float64
    answers failed there; the direct encoder writes them into `fp32_contents`."""
    result = ScoreResult("m", "1", "champion", "p", ["p"], [0.5], None, None, "FP32")
    request = V2Request(ScoreRequest("m", {}, 1, "v2-grpc"), False, None)
    output = encode_grpc(result, request).outputs[0]
    assert (output.datatype, list(output.contents.fp32_contents)) == ("FP32", [0.5])
