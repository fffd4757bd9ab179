"""Calls made with tritonclient (http and grpc), in a child process.

tritonclient's generated protos and KServe's register the same `inference.*` symbols in
protobuf's default pool, so one process cannot import both: the tests call `triton_calls`,
which runs this module as a script. Only the script imports tritonclient.

A call is a dict with `kind` and `protocol` (`"http"` or `"grpc"`):

- `server_ready`, `server_metadata`;
- `model_ready`, `model_metadata`: with `model` and optional `version`;
- `infer`: with `model`, `inputs` (`[{"name", "datatype", "shape", "data"}]`, data flat), and
  optional `version`, `id`, `parameters`, `outputs` (the names to request) and `binary_data`
  (http only: tensors as binary data, tritonclient's default true).

Each answer is one dict: `{"ready": bool}`, `{"metadata": {...}}` (field names as in the REST
JSON), or for `infer` `{"id", "model_version", "parameters", "outputs": {name: flat list},
"shapes": {name: shape}, "output_parameters": {name: {...}}}` with outputs in the response's
order; a call the server refuses answers `{"error": {"status", "message"}}` (status `"404"` or
`"StatusCode.NOT_FOUND"`, as tritonclient reports it).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

__all__ = ["triton_calls"]


def triton_calls(
    rest: str, grpc: str, calls: list[dict[str, Any]], timeout: float = 120
) -> list[dict[str, Any]]:
    """Make `calls` with tritonclient against a server; their answers, in order.

    Args:
        rest: the server's REST address, `HOST:PORT` (an `http://` prefix is dropped).
        grpc: the server's gRPC address, `HOST:PORT`.
        calls: the calls, as the module docstring describes.
        timeout: seconds the child process may take.
    """
    request = {"rest": rest.removeprefix("http://"), "grpc": grpc, "calls": calls}
    done = subprocess.run(  # -P: tests/ (the script's folder) must not shadow top-level modules
        [sys.executable, "-P", __file__], input=json.dumps(request),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the child process: only it imports tritonclient -----------------------------------------
def _plain(value: Any) -> Any:
    """A numpy value as JSON: text outputs come back as bytes."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


def _grpc_parameters(parameters: Any) -> dict[str, Any]:
    return {k: getattr(p, p.WhichOneof("parameter_choice")) for k, p in parameters.items()}


def _infer(protocol: str, client: Any, call: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    module = importlib.import_module(f"tritonclient.{protocol}")
    binary = {"binary_data": call.get("binary_data", True)} if protocol == "http" else {}
    inputs = []
    for spec in call["inputs"]:
        tensor = module.InferInput(spec["name"], spec["shape"], spec["datatype"])
        data = np.array(spec["data"], dtype=triton_to_np_dtype(spec["datatype"]))
        tensor.set_data_from_numpy(data.reshape(spec["shape"]), **binary)
        inputs.append(tensor)
    wanted = [module.InferRequestedOutput(n, **binary) for n in call.get("outputs", [])]
    result = client.infer(
        call["model"], inputs, model_version=call.get("version", ""), outputs=wanted or None,
        request_id=call.get("id", ""), parameters=call.get("parameters") or None,
    )  # fmt: skip
    response = result.get_response()
    if protocol == "http":
        answer = {"id": response.get("id", ""), "model_version": response.get("model_version"),
                  "parameters": response.get("parameters", {})}  # fmt: skip
        described = {o["name"]: dict(o.get("parameters", {})) for o in response["outputs"]}
        for parameters in described.values():
            parameters.pop("binary_data_size", None)  # how it travelled, not what it says
    else:
        answer = {"id": response.id, "model_version": response.model_version,
                  "parameters": _grpc_parameters(response.parameters)}  # fmt: skip
        described = {o.name: _grpc_parameters(o.parameters) for o in response.outputs}
    arrays = {name: result.as_numpy(name) for name in described}
    answer["outputs"] = {n: _plain(a.reshape(-1).tolist()) for n, a in arrays.items()}
    answer["shapes"] = {n: list(a.shape) for n, a in arrays.items()}
    answer["output_parameters"] = described
    return answer


def _metadata(found: Any) -> dict[str, Any]:
    if isinstance(found, dict):  # http answers the REST JSON
        return found
    from google.protobuf.json_format import MessageToDict

    got = MessageToDict(found, preserving_proto_field_name=True)
    for tensor in [*got.get("inputs", []), *got.get("outputs", [])]:
        tensor["shape"] = [int(d) for d in tensor.get("shape", [])]  # int64 comes as text
    return got


def _call(clients: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    from tritonclient.utils import InferenceServerException

    client, kind = clients[call["protocol"]], call["kind"]
    model, version = call.get("model", ""), call.get("version", "")
    try:
        if kind == "infer":
            return _infer(call["protocol"], client, call)
        if kind == "server_ready":
            return {"ready": client.is_server_ready()}
        if kind == "model_ready":
            return {"ready": client.is_model_ready(model, version)}
        if kind == "server_metadata":
            return {"metadata": _metadata(client.get_server_metadata())}
        if kind == "model_metadata":
            return {"metadata": _metadata(client.get_model_metadata(model, version))}
    except InferenceServerException as exc:
        return {"error": {"status": str(exc.status()), "message": exc.message()}}
    raise ValueError(f"unknown call kind {kind!r}: infer, server_ready, server_metadata, "
                     "model_ready or model_metadata")  # fmt: skip


def main() -> None:
    """Read the request from stdin; print the answers as one JSON line."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    req = json.loads(sys.stdin.read())
    clients = {
        "http": triton_http.InferenceServerClient(req["rest"]),
        "grpc": triton_grpc.InferenceServerClient(req["grpc"]),
    }
    print(json.dumps([_call(clients, call) for call in req["calls"]]))


if __name__ == "__main__":
    main()
