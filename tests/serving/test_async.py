"""Asynchronous inference: a request event in, a result event out, logged like HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from loopstack.core.events import Event, EventService, Publisher, open_event_log
from loopstack.core.events.errors import TopicNotFound
from loopstack.core.events.topics import INFERENCE_REQUESTS, INFERENCE_RESULTS

from .conftest import BIKE, Served, bike_full_row, wait_events

pytestmark = pytest.mark.integration


def _results(served: Served, correlation: set[str], timeout: float = 30) -> dict[str, Any]:
    log = open_event_log(served.settings)
    try:
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                items = EventService(log).tail(INFERENCE_RESULTS, limit=1000).items
            except TopicNotFound:
                items = []
            found = {
                i["event"]["correlationid"]: i["event"]
                for i in items
                if i["event"].get("correlationid") in correlation
            }
            if len(found) == len(correlation):
                return found
            time.sleep(0.2)
        raise TimeoutError(f"{len(found)} of {len(correlation)} results")
    finally:
        log.close()


def test_request_events_are_scored_and_answered(served: Served, tmp_path: Any) -> None:
    ok, bad = f"async-{uuid.uuid4()}", f"async-{uuid.uuid4()}"
    log = open_event_log(served.settings)
    publisher = Publisher(log, tmp_path / "app.db")
    try:
        for correlation, inputs in (
            (ok, bike_full_row()),
            (bad, {**bike_full_row(), "temp": "warm"}),
        ):
            data = {"correlation_id": correlation, "model": BIKE, "inputs": inputs}
            publisher.publish(
                INFERENCE_REQUESTS,
                Event.create(
                    "inference.request.v1",
                    data,
                    source="tests",
                    subject=BIKE,
                    correlationid=correlation,
                ),
            )
    finally:
        publisher.close(timeout=10)
        log.close()
    results = _results(served, {ok, bad})
    good = results[ok]["data"]
    assert good["status"] == "ok" and good["version"] == served.versions["v1"]
    assert results[bad]["data"]["status"] == "error" and "temp" in results[bad]["data"]["error"]
    pid = good["outputs"]["prediction_ids"][0]
    logged = wait_events(
        served.settings, lambda e: e["id"] == pid or e.get("correlationid") == bad, 2
    )
    assert logged[pid]["data"]["protocol"] == "async"
    assert logged[pid]["data"]["outputs"]["prediction"] == pytest.approx(
        good["outputs"]["predictions"][0]
    )
    assert any(e["data"]["status"] == "error" for e in logged.values())
