"""Shared fixtures: a reproducible synthetic reference, a service on a temp store, an HTTP client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from loopstack_drift.app import create_app
from loopstack_drift.service import DetectorService
from starlette.testclient import TestClient
from tables import fit_body


@pytest.fixture
def service(tmp_path: Path) -> DetectorService:
    """A service on an empty store."""
    return DetectorService(tmp_path / "store")


@pytest.fixture
def client(service: DetectorService) -> Iterator[TestClient]:
    """The real app in process, with one fitted key `bikes`."""
    with TestClient(create_app(service)) as http:
        response = http.post("/v1/detectors/bikes/fit", json=fit_body())
        assert response.status_code == 200, response.text
        yield http
