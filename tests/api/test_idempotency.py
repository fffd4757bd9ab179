"""`Idempotency-Key`: a mutating call sent again gets its first outcome, never a second apply."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.api.permissions import PUBLIC, ROUTE_ROLES
from loopstack.client import LoopstackClient
from loopstack.core.errors import Unavailable
from loopstack.core.settings import Settings

from tests.servers import asgi_server


class Counter:
    """A mutating route's applies, counted."""

    def __init__(self) -> None:
        self.applied = 0
        self.delay_s = 0.0
        self.fail = False
        self.started = threading.Event()


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, Counter]]:
    monkeypatch.setitem(ROUTE_ROLES, ("POST", "/count"), PUBLIC)
    app = create_app(Settings(state_dir=tmp_path))
    counter = Counter()

    @app.post("/count", status_code=201)
    def count(body: dict[str, int]) -> dict[str, int]:
        counter.started.set()
        time.sleep(counter.delay_s)
        if counter.fail:
            raise Unavailable("MLflow at http://127.0.0.1:1 is not answering (test)")
        counter.applied += 1
        return {"applied": counter.applied, **body}

    yield app, counter


def test_a_retry_with_the_same_key_gets_the_first_answer(counted: tuple[FastAPI, Counter]) -> None:
    app, counter = counted
    client = TestClient(app)
    key = {"Idempotency-Key": "deploy-1"}
    first = client.post("/count", json={"x": 1}, headers=key)
    again = client.post("/count", json={"x": 1}, headers=key)
    assert (first.status_code, first.json()) == (201, {"applied": 1, "x": 1})
    assert (again.status_code, again.json()) == (201, {"applied": 1, "x": 1})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert counter.applied == 1
    # Without a key, or with another one, each request is its own call.
    assert client.post("/count", json={"x": 1}).json()["applied"] == 2
    assert client.post("/count", json={"x": 1}, headers={"Idempotency-Key": "2"}).json() == {
        "applied": 3,
        "x": 1,
    }
    # Another caller's credentials never see this caller's answer: the key is theirs anew.
    other = client.post("/count", json={"x": 1}, headers={**key, "Authorization": "Bearer b"})
    assert other.json()["applied"] == 4


def test_a_key_reused_for_another_request_is_refused(counted: tuple[FastAPI, Counter]) -> None:
    app, counter = counted
    client = TestClient(app)
    client.post("/count", json={"x": 1}, headers={"Idempotency-Key": "k"})
    reused = client.post("/count", json={"x": 2}, headers={"Idempotency-Key": "k"})
    assert reused.status_code == 422
    assert reused.json()["type"] == "IdempotencyKeyReused"
    assert "different request" in reused.json()["error"]
    assert counter.applied == 1
    bad = client.post("/count", json={"x": 1}, headers={"Idempotency-Key": "x" * 300})
    assert bad.status_code == 400 and "255" in bad.json()["error"]


def test_a_failed_call_is_not_kept_so_its_retry_applies_once(
    counted: tuple[FastAPI, Counter],
) -> None:
    app, counter = counted
    client = TestClient(app)
    key = {"Idempotency-Key": "retry-me"}
    counter.fail = True
    failed = client.post("/count", json={"x": 1}, headers=key)
    assert failed.status_code == 503 and "MLflow" in failed.json()["error"]
    assert counter.applied == 0
    counter.fail = False
    assert client.post("/count", json={"x": 1}, headers=key).json()["applied"] == 1
    assert client.post("/count", json={"x": 1}, headers=key).json()["applied"] == 1
    assert counter.applied == 1


def test_a_retry_while_the_first_runs_is_told_to_wait(counted: tuple[FastAPI, Counter]) -> None:
    app, counter = counted
    client = TestClient(app)
    counter.delay_s = 1.5
    key = {"Idempotency-Key": "slow"}
    first: list[int] = []
    worker = threading.Thread(
        target=lambda: first.append(client.post("/count", json={}, headers=key).status_code)
    )
    worker.start()
    assert counter.started.wait(10)
    during = client.post("/count", json={}, headers=key)
    worker.join(20)
    assert during.status_code == 409
    assert during.json()["type"] == "IdempotencyKeyInFlight"
    assert first == [201] and counter.applied == 1


def test_the_sdk_resends_a_call_whose_answer_was_lost_and_it_applies_once(
    counted: tuple[FastAPI, Counter],
) -> None:
    """The SDK's timeout fires while the API is still working: the SDK sends the call again
    with the same key, waits out the first attempt (409 in progress), and gets its outcome."""
    app, counter = counted
    counter.delay_s = 1.5
    with asgi_server(app) as url, LoopstackClient(url, timeout=1.0, retries=4) as sdk:
        answer = sdk.post("/count", {"x": 7})
    assert answer == {"applied": 1, "x": 7}
    assert counter.applied == 1
