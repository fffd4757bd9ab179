"""Input forms without a server: the codecs read an `[N, F]` tensor and v1 list rows as positional
rows, the schema splits them in signature order and refuses null/NaN/inf where the spec does not
allow them, and v2 answers echo the caller's request id."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from loopstack.serving.codec import (
    V2Request,
    decode_grpc,
    decode_v1,
    decode_v2,
    encode_grpc,
    encode_v2,
)
from loopstack.serving.errors import BadRequest
from loopstack.serving.runtime import ScoreRequest, ScoreResult
from loopstack.serving.schema import Column, Matrix, ModelSchema

NUMERIC = ModelSchema(
    [
        Column("balance", "double", "FP64", "float", "float64"),
        Column("income", "double", "FP64", "float", "float64"),
        Column("age", "long", "INT64", "int", "float64"),
    ]
)
MIXED = ModelSchema(
    [
        Column("student", "string", "BYTES", "str", "object"),
        Column("balance", "double", "FP64", "float", "float64"),
    ]
)
RESULT = ScoreResult("m", "3", "champion", "pid", ["pid"], [0.5], None, None, "FP64")


def _v2(body: dict[str, Any]) -> V2Request:
    return decode_v2(orjson.dumps(body), {}, "m", None)


def test_v2_json_matrix_is_split_in_signature_order_and_checked_at_once() -> None:
    rows = [[1.5 + i, 2.0, 40 + i] for i in range(20)]
    body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [20, 3], "data": rows}]}
    score = _v2(body).score
    assert score.rows == 20 and score.columns == {} and score.matrix is not None
    columns, checked = NUMERIC.split(score.matrix)
    assert checked and columns["balance"][:2] == [1.5, 2.5] and columns["age"][-1] == 59.0
    # A few values are checked one by one (cheaper than an array there): the same columns.
    body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 3],
                        "data": [[1.5, 2.0, 40], [3.5, 4.0, 41]]}]}  # fmt: skip
    small = _v2(body).score.matrix
    assert small is not None
    columns, checked = NUMERIC.split(small)
    assert not checked and NUMERIC.check(columns, 2) == {
        "balance": [1.5, 3.5],
        "income": [2.0, 4.0],
        "age": [40.0, 41.0],
    }
    flat = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]
    }
    assert NUMERIC.split(_v2(flat).score.matrix)[0]["age"] == [3.0, 6.0]  # type: ignore[arg-type]


def test_a_matrix_beside_a_column_tensor_keeps_both() -> None:
    body = {"inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]},
        {"name": "city_id", "datatype": "BYTES", "shape": [1], "data": ["dc"]},
    ]}  # fmt: skip
    score = _v2(body).score
    assert score.columns == {"city_id": ["dc"]} and score.matrix is not None


@pytest.mark.parametrize(
    ("matrix", "reason"),
    [
        (np.array([[1.0, 2.0]]), "has 2 value(s) per row; the model reads 3, in this order: "
                                 "balance, income, age"),
        (np.array([[1.0, math.nan, 3.0]]), "field 'income' row 0 is NaN"),
        (np.array([[1.0, 2.0, 3.0], [math.inf, 2.0, 3.0]]), "field 'balance' row 1 is inf"),
        (np.array([[1.0, 2.0, 3.5]]), "field 'age' expects an integer"),
        ([[1.0, None, 3]], "field 'income' row 0 is null"),
        ([[1.0, 2.0]], "input 'x' row 0 has 2 value(s) per row"),
    ],
)  # fmt: skip
def test_matrix_rows_are_refused_with_the_field_and_row(matrix: Any, reason: str) -> None:
    columns, checked = {}, False
    with pytest.raises(BadRequest) as caught:
        columns, checked = NUMERIC.split(Matrix("x", matrix))
        NUMERIC.check(columns, len(matrix), checked_already=set(columns) if checked else ())
    assert reason in caught.value.message


def test_nullable_fields_pass_nan_and_null_but_never_inf() -> None:
    nullable = {"income"}
    columns, checked = NUMERIC.split(Matrix("x", np.array([[1.0, math.nan, 3.0]])), nullable)
    assert checked and math.isnan(columns["income"][0])
    checked_columns = NUMERIC.check({"balance": [1.0], "income": [None], "age": [3]}, 1, nullable)
    assert math.isnan(checked_columns["income"][0])
    with pytest.raises(BadRequest, match="'income' row 0 is inf"):
        NUMERIC.split(Matrix("x", np.array([[1.0, math.inf, 3.0]])), nullable)
    with pytest.raises(BadRequest, match="nullable_fields"):
        NUMERIC.check({"balance": [None], "income": [1.0], "age": [3]}, 1, nullable)


def test_per_column_values_refuse_null_nan_and_inf_naming_the_field() -> None:
    for value, word in ((None, "null"), (math.nan, "NaN"), (-math.inf, "-inf")):
        with pytest.raises(BadRequest, match=f"field 'balance' row 1 is {word}"):
            NUMERIC.check({"balance": [1.0, value], "income": [1, 2], "age": [3, 4]}, 2)


def test_a_numeric_matrix_for_a_model_with_text_inputs_says_to_send_columns() -> None:
    with pytest.raises(BadRequest, match=r"student \(not numeric\); send one tensor per input"):
        MIXED.split(Matrix("input-0", np.array([[1.0, 2.0]])))
    with pytest.raises(BadRequest, match="send one tensor per input"):  # a small one, as sent
        MIXED.split(Matrix("input-0", [[1.0, 2.0]], "FP64"))
    assert "not accepted" in MIXED.input_forms()["input_matrix"]
    forms = NUMERIC.input_forms()
    assert forms["input_order"] == "balance,income,age" and "[-1, 3]" in forms["input_matrix"]


def test_v1_list_rows_follow_the_signature_order() -> None:
    score = decode_v1(orjson.dumps({"instances": [["No", 774.07], ["Yes", 10]]}), "m")
    assert score.rows == 2 and score.matrix is not None
    columns, checked = MIXED.split(score.matrix)
    assert not checked
    assert MIXED.check(columns, 2) == {"student": ["No", "Yes"], "balance": [774.07, 10.0]}
    with pytest.raises(BadRequest, match="every instance as a list"):
        decode_v1(orjson.dumps({"instances": [["No", 1.0], {"student": "No"}]}), "m")


def test_v2_mixed_json_matrix_goes_value_by_value() -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1, True, 3]}]}
    matrix = _v2(body).score.matrix
    assert matrix is not None and isinstance(matrix.values, list)
    with pytest.raises(BadRequest, match="'income' expects a number"):
        NUMERIC.check(NUMERIC.split(matrix)[0], 1)


def test_kserve_rest_client_body_is_accepted_and_other_fields_named() -> None:
    tensor = {"name": "balance", "datatype": "FP64", "shape": [1], "data": [1.0]}
    decoded = _v2({"id": "r-7", "model_name": "m", "inputs": [tensor]})
    assert decoded.score.request_id == "r-7"
    with pytest.raises(BadRequest, match="names model 'other'"):
        _v2({"model_name": "other", "inputs": [tensor]})
    with pytest.raises(BadRequest, match=r"unknown top-level field\(s\) model_version"):
        _v2({"model_version": "1", "inputs": [tensor]})
    with pytest.raises(BadRequest, match="'id' must be a string"):
        _v2({"id": 7, "inputs": [tensor]})
    with pytest.raises(BadRequest, match=r"BYTES \[N, F\] tensor"):
        _v2({"inputs": [{**tensor, "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]})


def test_v2_answers_echo_the_request_id_and_keep_the_prediction_id() -> None:
    tensor = {"name": "balance", "datatype": "FP64", "shape": [1], "data": [1.0]}
    for sent, echoed in (("caller-1", "caller-1"), (None, "pid")):
        request = _v2({"id": sent, "inputs": [tensor]} if sent else {"inputs": [tensor]})
        body, _ = encode_v2(RESULT, request)
        answer = orjson.loads(body)
        assert answer["id"] == echoed and answer["parameters"]["prediction_id"] == "pid"
        request.binary = True
        binary, headers = encode_v2(RESULT, request)
        length = int(headers["inference-header-content-length"])
        assert orjson.loads(binary[:length])["id"] == echoed


def test_grpc_matrix_and_id_echo() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP32", shape=[20, 3],
        contents=pb.InferTensorContents(fp32_contents=[1, 2, 3] * 20),
    )  # fmt: skip
    raw = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="INT64", shape=[12, 3])
    for request in (
        pb.ModelInferRequest(model_name="m", id="g-1", inputs=[tensor]),
        pb.ModelInferRequest(
            model_name="m",
            id="g-1",
            inputs=[raw],
            raw_input_contents=[np.array([1, 2, 3] * 12, dtype=np.int64).tobytes()],
        ),
    ):
        decoded = decode_grpc(request)
        matrix = decoded.score.matrix
        assert matrix is not None and isinstance(matrix.values, np.ndarray)
        assert NUMERIC.split(matrix)[0]["age"][0] == 3.0
        assert encode_grpc(RESULT, decoded).id == "g-1"
    plain = decode_grpc(pb.ModelInferRequest(model_name="m", inputs=[tensor]))
    response = encode_grpc(RESULT, plain)
    assert response.id == "pid" and response.parameters["prediction_id"].string_param == "pid"


def test_request_without_id_keeps_score_request_defaults() -> None:
    request = V2Request(ScoreRequest("m", {}, 1, "v2-grpc"), False, None)
    assert encode_grpc(RESULT, request).id == "pid"
