"""Drive the server with tritonclient (http and grpc) in its own process.

tritonclient's generated protos and KServe's register the same `inference.*` symbols in
protobuf's default pool, so one process cannot import both: the tests run this as a script.
Usage: `python triton_probe.py REQUEST_JSON`; prints one JSON line with both answers.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http


def _inputs(module: Any, row: dict[str, Any]) -> list[Any]:
    inputs = []
    for name, value in row.items():
        is_text = isinstance(value, str)
        tensor = module.InferInput(name, [1], "BYTES" if is_text else "FP64")
        tensor.set_data_from_numpy(np.array([value], dtype=object if is_text else np.float64))
        inputs.append(tensor)
    return inputs


def main() -> None:
    """Run one http and one grpc inference as the request describes."""
    req = json.loads(sys.argv[1])
    model, params = req["model"], req.get("parameters") or None
    http_client = triton_http.InferenceServerClient(req["rest"])
    grpc_client = triton_grpc.InferenceServerClient(req["grpc"])
    out: dict[str, Any] = {
        "ready": [http_client.is_model_ready(model), grpc_client.is_model_ready(model)],
        "grpc_inputs": sorted(t.name for t in grpc_client.get_model_metadata(model).inputs),
    }
    via_http = http_client.infer(model, _inputs(triton_http, req["row"]), parameters=params)
    via_grpc = grpc_client.infer(model, _inputs(triton_grpc, req["row"]), parameters=params)
    out["http"] = {
        "response": via_http.get_response(),
        "prediction": via_http.as_numpy("prediction").tolist(),
    }
    out["grpc"] = {
        "response": via_grpc.get_response(as_json=True),
        "prediction": via_grpc.as_numpy("prediction").tolist(),
    }
    try:
        grpc_client.infer(model, _inputs(triton_grpc, {"nonsense": 1.0}), parameters=params)
    except Exception as exc:  # the error the official client reports for a bad request
        out["grpc_error"] = {
            "status": str(getattr(exc, "status", lambda: "")()),
            "message": str(exc),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
