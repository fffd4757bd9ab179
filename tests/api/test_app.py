"""The management API: health, OpenAPI, and errors as `{"error": reason}`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.api.permissions import PUBLIC, ROUTE_ROLES
from loopstack.core.errors import NotFound
from loopstack.core.settings import Settings


def test_health_and_openapi(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(state_dir=tmp_path)))
    assert client.get("/healthz").json() == {
        "status": "ok",
        "version": "0.1.0",
        "backend": "embedded",
    }
    assert client.get("/openapi.json").json()["info"]["title"] == "Loopstack management API"
    assert client.get("/metrics").status_code == 200


def test_loopstack_errors_become_json_with_their_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ROUTE_ROLES, ("GET", "/boom"), PUBLIC)  # a route has a role entry
    app = create_app(Settings(state_dir=tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise NotFound("model 'x' not found; list models with `loopstack models list`")

    response = TestClient(app).get("/boom")
    assert response.status_code == 404
    assert response.json()["error"].startswith("model 'x' not found")


def test_a_route_without_a_role_entry_admits_nobody(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path))

    @app.get("/unlisted")
    def unlisted() -> dict[str, str]:
        return {"secret": "x"}

    response = TestClient(app).get("/unlisted")
    assert response.status_code == 403
    assert response.json()["error"] == "GET /unlisted has no role entry: nobody may call it"
