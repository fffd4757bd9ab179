"""Protocol codecs: KServe v1 JSON, OIP v2 JSON (and its binary-tensor extension), OIP v2 gRPC.

Each decoder turns a request into a `ScoreRequest` (columns of values); each encoder turns a
`ScoreResult` into the protocol's answer. Malformed input raises `BadRequest` with the reason;
rows, fields and values over the server's `Limits` (`serving.limits`) are refused before the
columns are built, the same on every protocol, and the runtime checks them once more.
Rows may also come positionally, in the signature's column order: one numeric `[N, F]` tensor
(v2 REST and gRPC, any name) or v1 `instances` as lists; they travel as a `Matrix` that the
runtime splits by the answering version's signature. A v2 answer's `id` echoes the request's
(the OIP requires it); Loopstack's own id is the `prediction_id` parameter either way.
Explanations, when asked for, are a v1 field `explanations` (a list, one per instance) and a v2
response parameter `explanations` holding that list as JSON text (v2 parameters are scalars).
A model with a review margin adds v1 `needs_review` (one flag per instance), v2 parameters
`needs_review` (any row) and `needs_review_ids` (the flagged rows' prediction ids). Features
passed to the model as missing (stale or absent, `stale_features: missing`) are v1
`missing_features` (one list per instance) and the v2 parameter `missing_features` (names,
comma-separated), present only when some feature was missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import orjson

from loopstack.serving.errors import BadRequest
from loopstack.serving.limits import Limits
from loopstack.serving.runtime import ScoreRequest, ScoreResult
from loopstack.serving.schema import V2_NUMERIC, Matrix

__all__ = [
    "BINARY_HEADER",
    "V2Request",
    "decode_v1",
    "decode_grpc",
    "decode_v2",
    "encode_grpc",
    "encode_v1",
    "encode_v2",
    "from_infer_request",
    "to_infer_response",
    "result_parameters",
]

BINARY_HEADER = "inference-header-content-length"
_DEFAULT = Limits()
"""The default limits, for a decoder called without the server's (tests, tools)."""


def _json(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


# --- KServe v1 ---------------------------------------------------------------------------
def decode_v1(body: bytes, model: str, limits: Limits | None = None) -> ScoreRequest:
    """`{"instances": [{field: value, ...}, ...]}` -> columns (an entity key is one more field);
    `{"instances": [[value, ...], ...]}`: rows in the model's column order. Rows and fields
    over the `limits` are refused before any column is built."""
    payload = _json(body)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('expected a JSON object {"instances": [{field: value, ...}, ...]}')
    extra = sorted(set(payload) - {"instances", "parameters"})
    if extra:
        raise BadRequest(f"unknown top-level field(s) {', '.join(extra)}; send only 'instances'")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list of objects, or of lists in column order")
    limits = limits or _DEFAULT
    limits.rows(len(instances))
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    if instances and isinstance(instances[0], list):
        for i, instance in enumerate(instances):
            if not isinstance(instance, list):
                raise BadRequest(
                    f"instance {i} is {type(instance).__name__}; send every instance as a list "
                    "(in the model's column order) or every one as an object"
                )
        matrix = Matrix("instances", instances)
        return ScoreRequest(model, {}, len(instances), "v1", parameters=parameters, matrix=matrix)
    names: dict[str, None] = {}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(
                f"instance {i} is {type(instance).__name__}; each instance must be an object "
                "keyed by field name (or each a list in the model's column order)"
            )
        names.update(dict.fromkeys(instance))
    limits.fields(len(names))
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, instance in enumerate(instances):
        if len(instance) != len(names):
            lacking = sorted(set(names) - set(instance))
            raise BadRequest(f"instance {i} lacks field(s) {', '.join(lacking)}")
        for name, value in instance.items():
            columns[name].append(value)
    return ScoreRequest(model, columns, len(instances), "v1", parameters=parameters)


def encode_v1(result: ScoreResult) -> dict[str, Any]:
    """The v1 answer: predictions plus model, version, route, prediction ids, probabilities."""
    out: dict[str, Any] = {
        "predictions": result.predictions,
        "model_name": result.model,
        "model_version": result.version,
        "route": result.route,
        "id": result.id,
        "prediction_ids": result.prediction_ids,
    }
    if result.probabilities is not None:
        out["probabilities"] = result.probabilities
        out["classes"] = result.classes
    if result.explanations is not None:
        out["explanations"] = result.explanations
    if result.needs_review is not None:
        out["needs_review"] = result.needs_review
    if result.missing_features is not None:
        out["missing_features"] = result.missing_features
    return out


# --- OIP v2 REST --------------------------------------------------------------------------
class V2Request:
    """A decoded v2 request plus what the caller asked about the outputs."""

    def __init__(self, score: ScoreRequest, binary: bool, requested: list[str] | None) -> None:
        self.score = score
        self.binary = binary
        self.requested = requested


def _check_shape(name: str, shape: Any) -> list[int]:
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise BadRequest(
            f"input {name!r}: 'shape' must be a non-empty list of sizes, got {shape!r}"
        )
    if len(shape) > 2:
        raise BadRequest(
            f"input {name!r} has shape {shape}; send one column per input, shape [rows] or "
            "[rows, 1], or one [rows, columns] tensor of every input in the model's order"
        )
    return shape


def _is_matrix(shape: list[int]) -> bool:
    """`[N, F]` with F > 1: every input in one tensor (`[N, 1]` is one column)."""
    return len(shape) == 2 and shape[1] != 1


def _rows_of(name: str, shape: Any, count: int) -> int:
    shape = _check_shape(name, shape)
    if math.prod(shape) != count:
        raise BadRequest(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {count}"
        )
    return int(shape[0])


def _flat(data: list[Any]) -> list[Any]:
    if data and isinstance(data[0], list):
        return [v for row in data for v in (row if isinstance(row, list) else [row])]
    return data


class _Inputs:
    """Decoded tensors: one column each, or one `[N, F]` matrix; their row count agrees."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.datatypes: dict[str, str] = {}
        self.matrix: Matrix | None = None
        self.rows: int | None = None

    def _count(self, name: str, rows: int) -> None:
        if name in self.columns or (self.matrix is not None and self.matrix.name == name):
            raise BadRequest(f"input {name!r} is sent twice")
        if self.rows is not None and rows != self.rows:
            raise BadRequest(f"input {name!r} has {rows} rows; other inputs have {self.rows}")
        self.rows = rows

    def column(self, name: str, datatype: str, values: list[Any]) -> None:
        self._count(name, len(values))
        self.columns[name] = values
        self.datatypes[name] = datatype

    def add_matrix(self, name: str, datatype: str, values: np.ndarray | list[list[Any]]) -> None:
        if datatype not in V2_NUMERIC:
            raise BadRequest(
                f"input {name!r} is a {datatype} [N, F] tensor; an [N, F] tensor must be numeric "
                "(FP32, FP64, INT*, UINT*): send one tensor per input instead"
            )
        if self.matrix is not None:
            raise BadRequest(
                f"inputs {self.matrix.name!r} and {name!r} are both [N, F] tensors; send every "
                "input in one, or one tensor per input"
            )
        self._count(name, len(values))
        self.matrix = Matrix(name, values, datatype)


_ARRAY_MIN = 32
"""Values from which a matrix is checked as an array: below it numpy's fixed cost per call
exceeds checking each value (one row of a few columns is the commonest request)."""


def _rows(values: list[Any], width: int) -> list[list[Any]]:
    return [values[i : i + width] for i in range(0, len(values), width)]


def _matrix_of_json(values: list[Any], shape: list[int]) -> np.ndarray | list[list[Any]]:
    """A numeric array when every value is a number (checked a column at a time later); else
    the rows as sent, for the value-by-value check to name what is wrong and where."""
    rows, width = shape
    if len(values) >= _ARRAY_MIN and not any(isinstance(v, bool) for v in values):
        array = np.asarray(values)
        if array.dtype.kind in "fiu":
            return array.reshape(rows, width)
    return _rows(values, width)


def _columns_from_json(inputs: Any, limits: Limits) -> _Inputs:
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    limits.fields(len(inputs))
    decoded = _Inputs()
    values_sent = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise BadRequest(f"input {i} must be an object with name, shape, datatype, data")
        name, datatype, data = tensor.get("name"), tensor.get("datatype"), tensor.get("data")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"input {i} has no 'name'")
        if not isinstance(datatype, str):
            raise BadRequest(f"input {name!r} has no 'datatype'")
        if not isinstance(data, list):
            raise BadRequest(f"input {name!r}: 'data' must be a list")
        values = _flat(data)
        values_sent += len(values)
        limits.elements(values_sent)
        shape = _check_shape(name, tensor.get("shape"))
        _rows_of(name, shape, len(values))
        if _is_matrix(shape):
            decoded.add_matrix(name, datatype, _matrix_of_json(values, shape))
        else:
            decoded.column(name, datatype, values)
    return decoded


def decode_v2(
    body: bytes,
    headers: dict[str, str],
    model: str,
    version: str | None,
    limits: Limits | None = None,
) -> V2Request:
    """A v2 JSON request, or one with binary tensors (`Inference-Header-Content-Length`);
    fields and values over the `limits` are refused before any column is built."""
    limits = limits or _DEFAULT
    if BINARY_HEADER in headers:
        return _decode_v2_binary(body, headers[BINARY_HEADER], model, version, limits)
    payload = _json(body)
    if not isinstance(payload, dict):
        raise BadRequest('expected a JSON object {"inputs": [...]}')
    # The OIP's fields, and the model KServe's own REST client names in the body as well.
    extra = sorted(set(payload) - {"id", "inputs", "outputs", "parameters", "model_name"})
    if extra:
        raise BadRequest(
            f"unknown top-level field(s) {', '.join(extra)}; a v2 request has id, inputs, "
            "outputs and parameters"
        )
    named = payload.get("model_name")
    if named is not None and named != model:
        raise BadRequest(f"the body names model {named!r}, the path {model!r}; send one model")
    decoded = _columns_from_json(payload.get("inputs"), limits)
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {request_id!r}")
    score = ScoreRequest(
        model,
        decoded.columns,
        decoded.rows or 0,
        "v2-rest",
        parameters=parameters,
        version=version,
        request_id=request_id or None,
        datatypes=decoded.datatypes,
        matrix=decoded.matrix,
    )
    binary, requested = _output_prefs(payload.get("outputs"), parameters)
    score.outputs = requested
    return V2Request(score, binary, requested)


def _output_prefs(outputs: Any, parameters: dict[str, Any]) -> tuple[bool, list[str] | None]:
    binary = bool(parameters.get("binary_data_output", False))
    if outputs is None:
        return binary, None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    for o in outputs:
        if (o.get("parameters") or {}).get("binary_data"):
            binary = True
    return binary, [o["name"] for o in outputs]


def _decode_v2_binary(
    body: bytes, length: str, model: str, version: str | None, limits: Limits
) -> V2Request:
    from kserve.protocol.infer_type import InferRequest

    try:
        json_length = int(length)
        if not 0 < json_length <= len(body):
            raise ValueError(f"{json_length} is outside the body of {len(body)} bytes")
        request = InferRequest.from_bytes(body, json_length, model)
    except Exception as exc:
        raise BadRequest(f"malformed binary-tensor request: {exc}") from None
    limits.fields(len(request.inputs))
    score = from_infer_request(request, "v2-rest", version, limits)
    parameters = score.parameters
    requested = [o.name for o in request.request_outputs] if request.request_outputs else None
    score.outputs = requested
    binary = bool(parameters.get("binary_data_output", False)) or any(
        o.binary_data for o in request.request_outputs or []
    )
    return V2Request(score, binary, requested)


def result_parameters(result: ScoreResult) -> dict[str, Any]:
    """Response parameters every v2 answer carries (REST and gRPC), plus any explanations."""
    parameters: dict[str, Any] = {
        "prediction_id": result.id,
        "prediction_ids": ",".join(result.prediction_ids),
        "model_version": result.version,
        "route": result.route,
    }
    if result.explanations is not None:
        parameters["explanations"] = orjson.dumps(result.explanations).decode()
    if result.needs_review is not None:
        parameters["needs_review"] = any(result.needs_review)
        flagged = [p for p, f in zip(result.prediction_ids, result.needs_review, strict=True) if f]
        if flagged:
            parameters["needs_review_ids"] = ",".join(flagged)
    if result.missing_features is not None:  # parameters are scalars: the union, comma-separated
        missing = dict.fromkeys(n for row in result.missing_features for n in row)
        parameters["missing_features"] = ",".join(missing)
    return parameters


def _output_arrays(result: ScoreResult) -> list[tuple[str, str, np.ndarray]]:
    n = len(result.predictions)
    if result.prediction_datatype == "BYTES":
        prediction = np.array([str(p).encode() for p in result.predictions], dtype=np.object_)
    else:
        prediction = np.asarray(result.predictions)
    arrays = [("prediction", result.prediction_datatype, prediction.reshape(n))]
    if result.probabilities is not None:
        arrays.append(("probabilities", "FP64", np.asarray(result.probabilities, dtype=np.float64)))
    return arrays


def encode_v2(result: ScoreResult, request: V2Request) -> tuple[bytes, dict[str, str]]:
    """The v2 answer as bytes (JSON, or JSON + binary tensors when the caller asked for them)."""
    known = {name for name, _, _ in _output_arrays(result)}
    if request.requested is not None:
        unknown = [n for n in request.requested if n not in known]
        if unknown:
            raise BadRequest(
                f"unknown output(s) {', '.join(unknown)}; outputs: {', '.join(sorted(known))}"
            )
    if request.binary:
        response = to_infer_response(
            result, request.requested, binary=True, request_id=request.score.request_id
        )
        body, json_length = response.to_rest()
        if isinstance(body, bytes) and json_length is not None:
            return body, {BINARY_HEADER: str(json_length)}
        return orjson.dumps(body), {}
    outputs = []
    for name, datatype, array in _output_arrays(result):
        if request.requested is not None and name not in request.requested:
            continue
        data = (
            [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
            if datatype == "BYTES"
            else array.reshape(-1).tolist()
        )
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": datatype,
            "shape": list(array.shape),
            "data": data,
        }
        if name == "probabilities" and result.classes is not None:
            tensor["parameters"] = {"classes": ",".join(str(c) for c in result.classes)}
        outputs.append(tensor)
    answer = {
        "model_name": result.model,
        "model_version": result.version,
        "id": request.score.request_id or result.id,
        "parameters": result_parameters(result),
        "outputs": outputs,
    }
    return orjson.dumps(answer), {}


# --- KServe InferRequest (binary REST) and gRPC ModelInferRequest -----------------------------
_Tensor = tuple[str, str, list[int], list[Any] | np.ndarray]
"""One input as decoded: name, datatype, shape, flat values (a list, or a 1-D array: a matrix
is reshaped from it without a round trip through Python values)."""


def _score_request(
    request: Any,
    tensors: Iterable[_Tensor],
    protocol: str,
    version: str | None,
    limits: Limits,
) -> ScoreRequest:
    """Columns of a KServe `InferRequest` or a gRPC `ModelInferRequest` (same field names)."""
    from kserve.protocol.infer_type import to_http_parameters

    decoded = _Inputs()
    values_sent = 0
    for name, datatype, shape, values in tensors:
        values_sent += len(values)
        limits.elements(values_sent)
        _rows_of(name, shape, len(values))
        if _is_matrix(shape):
            decoded.add_matrix(name, datatype, _matrix_of(name, datatype, values, shape))
        else:
            column = values.tolist() if isinstance(values, np.ndarray) else values
            decoded.column(name, datatype, column)
    parameters = to_http_parameters(request.parameters) if request.parameters else {}
    return ScoreRequest(
        request.model_name,
        decoded.columns,
        decoded.rows or 0,
        protocol,
        parameters=dict(parameters),
        version=version or (request.model_version or None),
        request_id=request.id or None,
        datatypes=decoded.datatypes,
        matrix=decoded.matrix,
    )


def _matrix_of(
    name: str, datatype: str, values: Any, shape: list[int]
) -> np.ndarray | list[list[Any]]:
    if datatype not in V2_NUMERIC:  # refused by `add_matrix`, with the reason
        return np.empty(shape)
    if len(values) < _ARRAY_MIN:
        flat = values.tolist() if isinstance(values, np.ndarray) else values
        return _rows(flat, shape[1])
    if isinstance(values, np.ndarray):
        return values.reshape(shape)
    from kserve.utils.numpy_codec import to_np_dtype

    try:
        return np.asarray(values, dtype=to_np_dtype(datatype)).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise BadRequest(f"input {name!r}: cannot read its data ({exc})") from None


def _numpy_tensors(inputs: Iterable[Any]) -> Iterator[_Tensor]:
    for tensor in inputs:
        try:
            array = tensor.as_numpy()
        except Exception as exc:
            raise BadRequest(f"input {tensor.name!r}: cannot read its data ({exc})") from None
        yield tensor.name, tensor.datatype, list(array.shape), array.reshape(-1)


def from_infer_request(
    request: Any, protocol: str, version: str | None = None, limits: Limits | None = None
) -> ScoreRequest:
    """Columns from a KServe `InferRequest` (binary REST)."""
    tensors = _numpy_tensors(request.inputs)
    return _score_request(request, tensors, protocol, version, limits or _DEFAULT)


def to_infer_response(
    result: ScoreResult,
    requested: list[str] | None = None,
    binary: bool = False,
    request_id: str | None = None,
) -> Any:
    """A KServe `InferResponse` of the result (its `to_grpc`/`to_rest` do the wire format); its
    id echoes the request's when it had one."""
    from kserve.protocol.infer_type import InferOutput, InferResponse

    outputs = []
    for name, datatype, array in _output_arrays(result):
        if requested is not None and name not in requested:
            continue
        output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
        output.set_data_from_numpy(array, binary_data=binary)
        if name == "probabilities" and result.classes is not None:
            output.parameters = {"classes": ",".join(str(c) for c in result.classes)}
        outputs.append(output)
    return InferResponse(
        response_id=request_id or result.id,
        model_name=result.model,
        infer_outputs=outputs,
        model_version=result.version,
        parameters=result_parameters(result),
        use_binary_outputs=binary,
    )


# --- OIP v2 gRPC: read and built straight from the protobuf messages --------------------------
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The `InferTensorContents` field of each datatype (FP16 travels only as raw bytes)."""
_NARROW = frozenset({"INT8", "INT16", "UINT8", "UINT16"})
"""Datatypes narrower than their contents field: range-checked through numpy."""


def decode_grpc(request: Any, limits: Limits | None = None) -> V2Request:
    """A gRPC `ModelInferRequest` as columns, read field by field (no KServe objects, no numpy
    for typed contents); raw input contents are read as KServe reads them and ask for raw outputs.
    Fields and values over the `limits` are refused before any column is built (the message
    size is gRPC's own receive limit).
    """
    limits = limits or _DEFAULT
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"{len(request.inputs)} input(s) but {len(raw)} raw_input_contents; send one per input"
        )
    limits.fields(len(request.inputs))
    tensors = _grpc_tensors(request.inputs, raw)
    score = _score_request(request, tensors, "v2-grpc", None, limits)
    requested = [o.name for o in request.outputs] if request.outputs else None
    score.outputs = requested
    return V2Request(score, bool(raw), requested)


def _grpc_tensors(inputs: Iterable[Any], raw: Any) -> Iterator[_Tensor]:
    for i, tensor in enumerate(inputs):
        name, datatype = tensor.name, tensor.datatype
        values: list[Any] | np.ndarray
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input {name!r} has contents and raw_input_contents; send one")
            values = _raw_values(name, datatype, raw[i])
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise BadRequest(f"input {name!r}: datatype {datatype!r} cannot travel in contents")
            values = list(getattr(tensor.contents, field))
            if datatype in _NARROW:
                values = _through_numpy(name, datatype, values)
        yield name, datatype, _grpc_shape(name, list(tensor.shape), len(values)), values


def _raw_values(name: str, datatype: str, data: bytes) -> np.ndarray:
    from kserve.protocol.infer_type import deserialize_bytes_tensor
    from kserve.utils.numpy_codec import to_np_dtype

    dtype = to_np_dtype(datatype)
    if dtype is None:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
    try:
        array = (
            deserialize_bytes_tensor(data) if datatype == "BYTES" else np.frombuffer(data, dtype)
        )
    except Exception as exc:
        raise BadRequest(f"input {name!r}: cannot read its data ({exc})") from None
    return np.asarray(array)


def _through_numpy(name: str, datatype: str, values: list[Any]) -> list[Any]:
    from kserve.utils.numpy_codec import to_np_dtype

    try:
        return list(np.asarray(values, dtype=to_np_dtype(datatype)).tolist())
    except (OverflowError, ValueError) as exc:
        raise BadRequest(f"input {name!r}: cannot read its data ({exc})") from None


def _grpc_shape(name: str, shape: list[int], count: int) -> list[int]:
    """The shape, one `-1` dimension resolved against the value count (as a numpy reshape does;
    numpy would take any negative size for `-1`: refused, as REST refuses it)."""
    if all(d >= 0 for d in shape):
        return shape
    if any(d < -1 for d in shape) or shape.count(-1) > 1:
        raise BadRequest(
            f"input {name!r}: 'shape' must be a non-empty list of sizes (one of them may be -1), "
            f"got {shape!r}"
        )
    try:
        return list(np.empty(count, dtype=np.int8).reshape(shape).shape)
    except ValueError as exc:
        raise BadRequest(f"input {name!r}: cannot read its data ({exc})") from None


def encode_grpc(result: ScoreResult, request: V2Request) -> Any:
    """The gRPC `ModelInferResponse` of a result, built directly; outputs the caller did not ask
    for are left out, and raw inputs get raw outputs (`raw_output_contents`)."""
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferResponse

    response = ModelInferResponse(
        model_name=result.model,
        model_version=result.version,
        id=request.score.request_id or result.id,
    )
    _set_parameters(response.parameters, result_parameters(result))
    wanted = request.requested
    if wanted is None or "prediction" in wanted:
        predictions = result.predictions
        if result.prediction_datatype == "BYTES":
            predictions = [str(p).encode() for p in predictions]
        shape = [len(predictions)]
        _add_output(response, "prediction", result.prediction_datatype, shape, predictions, request)
    if result.probabilities is not None and (wanted is None or "probabilities" in wanted):
        flat = [p for row in result.probabilities for p in row]
        shape = [len(result.probabilities), len(result.probabilities[0])]
        output = _add_output(response, "probabilities", "FP64", shape, flat, request)
        if result.classes is not None:
            output.parameters["classes"].string_param = ",".join(str(c) for c in result.classes)
    return response


def _add_output(
    response: Any, name: str, datatype: str, shape: list[int], values: list[Any], request: V2Request
) -> Any:
    output = response.outputs.add(name=name, datatype=datatype, shape=shape)
    if request.binary:
        from kserve.protocol.infer_type import serialize_byte_tensor
        from kserve.utils.numpy_codec import to_np_dtype

        if datatype == "BYTES":
            data = serialize_byte_tensor(np.array(values, dtype=np.object_)).item()
        else:
            data = np.asarray(values, dtype=to_np_dtype(datatype)).tobytes()
        response.raw_output_contents.append(data)
        output.parameters["binary_data_size"].int64_param = len(data)
    else:
        getattr(output.contents, _CONTENTS[datatype]).extend(values)
    return output


def _set_parameters(target: Any, parameters: dict[str, Any]) -> None:
    for key, value in parameters.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        else:
            target[key].string_param = str(value)
