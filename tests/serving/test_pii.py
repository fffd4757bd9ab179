"""No raw PII in any store: after PII-bearing requests (answered and failed, every protocol, the
KServe logger ingest, a body that does not parse), the bytes of every file the server and the
feedback consumer wrote (event log, outbox spill, traffic store, read model, logs) hold none of
the sensitive values, while the non-sensitive values of the same requests are there.

The served credit model's spec marks `income` sensitive.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from loopstack.core.events import open_event_log
from loopstack.monitoring.feedback import ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.serving.ingest import INGEST_PATH, REQUEST_TYPE, RESPONSE_TYPE

from .conftest import CREDIT, Served, dumps, wait_events

pytestmark = pytest.mark.integration

INCOMES = {
    "v1": 918273.645,
    "v2": 827364.519,
    "grpc": 736451.928,
    "extra": 554433.221,
    "entity": 221144.338,
    "explain": 112233.449,
    "ingest": 332211.447,
    "broken": 443322.119,
}
TEXT_INCOMES = {"v1-text": "PII-TEXT-4471", "v2-bytes": "PII-TEXT-5582"}
BALANCE = 1357.913
"""Not sensitive: every event of these requests must carry it (the scan's positive control)."""


def _v2_inputs(income: Any, income_type: str = "FP64") -> list[dict[str, Any]]:
    return [
        {"name": "student", "datatype": "BYTES", "shape": [1], "data": ["No"]},
        {"name": "balance", "datatype": "FP64", "shape": [1], "data": [BALANCE]},
        {"name": "income", "datatype": income_type, "shape": [1], "data": [income]},
    ]


def _send_pii_requests(served: Served) -> set[str]:
    """Every path that takes a request with the sensitive field; returns their request ids."""
    ids: dict[str, str] = {}

    def post(name: str, path: str, body: Any, expect: int, raw: bytes | None = None) -> None:
        ids[name] = f"pii-{name}-{uuid.uuid4().hex[:8]}"
        answer = httpx.post(
            f"{served.rest}{path}",
            json=None if raw else body,
            content=raw,
            headers={"x-request-id": ids[name], "content-type": "application/json"},
            timeout=180,
        )  # fmt: skip  (the first explanation loads shap)
        assert answer.status_code == expect, (name, answer.text)

    row = {"student": "No", "balance": BALANCE}
    v1 = f"/v1/models/{CREDIT}:predict"
    post("v1", v1, {"instances": [{**row, "income": INCOMES["v1"]}]}, 200)
    post("v1-text", v1, {"instances": [{**row, "income": TEXT_INCOMES["v1-text"]}]}, 400)
    post("extra", v1, {"instances": [{**row, "income": INCOMES["extra"], "ssn": 1}]}, 400)
    post("entity", v1, {"instances": [{"customer_id": 8077, "income": INCOMES["entity"]}]}, 400)
    post("explain", f"{v1}?explain=true", {"instances": [{**row, "income": INCOMES["explain"]}]}, 200)  # fmt: skip
    v2 = f"/v2/models/{CREDIT}/infer"
    post("v2", v2, {"inputs": _v2_inputs(INCOMES["v2"])}, 200)
    post("v2-bytes", v2, {"inputs": _v2_inputs(TEXT_INCOMES["v2-bytes"], "BYTES")}, 400)
    broken = f'{{"instances": [{{"balance": {BALANCE}, "income": {INCOMES["broken"]}, "student": '
    post("broken", v1, None, 400, raw=broken.encode())

    request = pb.ModelInferRequest(model_name=CREDIT)
    for tensor in _v2_inputs(INCOMES["grpc"]):
        added = request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[1])
        if tensor["datatype"] == "BYTES":
            added.contents.bytes_contents.append(tensor["data"][0].encode())
        else:
            added.contents.fp64_contents.append(tensor["data"][0])
    ids["grpc"] = f"pii-grpc-{uuid.uuid4().hex[:8]}"
    with grpc.insecure_channel(served.grpc) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(request, timeout=60, metadata=[("x-request-id", ids["grpc"])])

    # The KServe logger's copy of a request, as an InferenceService named after the model sends it.
    event_id = str(uuid.uuid4())
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "http://localhost/",
               "ce-inferenceservicename": CREDIT, "content-type": "application/json"}  # fmt: skip
    logged = {"instances": [{**row, "income": INCOMES["ingest"]}]}
    url = f"{served.rest}{INGEST_PATH}"
    httpx.post(url, content=dumps(logged), headers={**headers, "ce-type": REQUEST_TYPE})
    answer = {"predictions": [0], "model_name": CREDIT}
    httpx.post(url, content=dumps(answer), headers={**headers, "ce-type": RESPONSE_TYPE})
    ids["ingest"] = event_id
    return set(ids.values())


def _forms(value: Any) -> list[bytes]:
    """How a value can sit in a file: as text (JSON, logs) or as a double (SQLite, parquet)."""
    if isinstance(value, str):
        return [value.encode()]
    return [repr(value).encode(), struct.pack("<d", value), struct.pack(">d", value)]


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_no_store_holds_a_raw_sensitive_value(served: Served, tmp_path: Path) -> None:
    sent = _send_pii_requests(served)
    found = wait_events(
        served.settings,
        lambda e: e.get("correlationid") in sent or e["data"].get("source_id") in sent,
        len(sent),
        timeout=60,
    )
    assert len(found) == len(sent)
    assert any(e["data"]["status"] == "error" for e in found.values())

    # The feedback consumer's read model of the same log (predictions with their inputs).
    settings = served.settings.model_copy(
        update={"feedback": served.settings.feedback.model_copy(
            update={"read_model_url": f"sqlite:///{tmp_path / 'read_model.db'}"})}
    )  # fmt: skip
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    try:
        consumer = FeedbackConsumer(settings, log, read_model)
        assert consumer.drain() > 0
        consumer.close()
    finally:
        read_model.close()
        log.close()

    files = _files(served.settings.state_path, tmp_path)
    names = {p.name for p in files}
    assert {"serving.log", "read_model.db"} <= names, names
    leaks = []
    for path in files:
        content = path.read_bytes()
        for value in [*INCOMES.values(), *TEXT_INCOMES.values()]:
            if any(form in content for form in _forms(value)):
                leaks.append(f"{value!r} in {path}")
    assert leaks == []
    # The scan sees what the stores hold: the non-sensitive balance is in the log and read model.
    holding = {p.name for p in files if any(f in p.read_bytes() for f in _forms(BALANCE))}
    assert "read_model.db" in holding and any(n.startswith("events") for n in holding), holding
