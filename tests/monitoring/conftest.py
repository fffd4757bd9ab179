"""A real detector server (drift runtime environment) for the monitoring tests, once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from loopstack.core.processes import Supervisor, free_port
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.detector_runtime import detector_server_spec, drift_python
from loopstack.monitoring.errors import DriftRuntimeMissing

# Importing alibi-detect takes ~10 s on 2 cores; leave room for a loaded CI machine.
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def detector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `python -m loopstack_drift.server` from the drift env; stop its process group after."""
    try:
        python = drift_python()
    except DriftRuntimeMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the drift runtime: {exc}")
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("drift")
    spec = detector_server_spec(free_port(), root / "store", python=python)
    supervisor = Supervisor(root / "state")
    running = supervisor.start(spec)
    try:
        supervisor.wait_healthy(running, timeout=START_TIMEOUT_S)
        assert spec.url is not None
        yield spec.url
    finally:
        supervisor.stop(spec.name, grace=5)


@pytest.fixture
def client(detector_url: str) -> Iterator[DetectorClient]:
    """A client of the session's detector server."""
    with DetectorClient(detector_url) as http:
        yield http
