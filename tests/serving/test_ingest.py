"""KServe InferenceService logger CloudEvents become one `prediction.v1` per request/response."""

from __future__ import annotations

import uuid

import httpx
import pytest
from loopstack.serving.ingest import INGEST_PATH, REQUEST_TYPE, RESPONSE_TYPE

from .conftest import Served, dumps, wait_events

pytestmark = pytest.mark.integration


def _headers(kind: str, event_id: str, time: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-type": kind,
        "ce-id": event_id,
        "ce-source": "http://localhost:9081/",
        "ce-time": time,
        "ce-inferenceservicename": "fraud",
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "fraud-predictor",
        "content-type": "application/json",
    }


def test_a_request_and_its_response_become_one_prediction(served: Served) -> None:
    event_id = str(uuid.uuid4())
    url = f"{served.rest}{INGEST_PATH}"
    response = {"model_name": "fraud", "model_version": "7", "id": "r1",
                "outputs": [{"name": "prediction", "datatype": "FP64", "shape": [1], "data": [0.25]}]}  # fmt: skip
    request = {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [1], "data": [12.5]}]}
    # The response may arrive first: the pair is matched by ce-id either way.
    first = httpx.post(
        url,
        content=dumps(response),
        headers=_headers(RESPONSE_TYPE, event_id, "2026-11-25T10:00:00.120Z"),
    )
    second = httpx.post(
        url,
        content=dumps(request),
        headers=_headers(REQUEST_TYPE, event_id, "2026-11-25T10:00:00.100Z"),
    )
    assert (first.status_code, first.json()["status"]) == (202, "waiting")
    assert (second.status_code, second.json()["status"]) == (202, "paired")
    events = wait_events(served.settings, lambda e: e["data"].get("source_id") == event_id, 1)
    (event,) = events.values()
    data = event["data"]
    assert (data["model"], data["version"], data["status"], data["protocol"]) == (
        "fraud",
        "7",
        "ok",
        "v2-rest",
    )
    assert data["inputs"] == {"amount": 12.5} and data["outputs"] == {"prediction": 0.25}
    assert data["latency_ms"] == pytest.approx(20, abs=0.5)


def test_a_request_without_response_is_logged_as_failed_after_the_wait(served: Served) -> None:
    event_id = str(uuid.uuid4())
    body = dumps({"instances": [{"amount": 3.0}]})
    answer = httpx.post(
        f"{served.rest}{INGEST_PATH}",
        content=body,
        headers=_headers(REQUEST_TYPE, event_id, "2026-11-25T10:00:01Z"),
    )
    assert answer.status_code == 202
    events = wait_events(served.settings, lambda e: e["data"].get("source_id") == event_id, 1)
    (event,) = events.values()
    assert event["data"]["status"] == "error" and "no response" in event["data"]["error"]
    assert event["data"]["inputs"] == {"amount": 3.0}


def test_events_that_are_not_kserve_logger_events_are_rejected(served: Served) -> None:
    headers = _headers("com.example.other", "x", "2026-11-25T10:00:01Z")
    answer = httpx.post(f"{served.rest}{INGEST_PATH}", content=b"{}", headers=headers)
    assert answer.status_code == 400 and "ce-type" in answer.json()["error"]
    bad_json = httpx.post(
        f"{served.rest}{INGEST_PATH}",
        content=b"{oops",
        headers=_headers(REQUEST_TYPE, "y", "2026-11-25T10:00:01Z"),
    )
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]
