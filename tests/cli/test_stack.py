"""`loopstack up`, `status` and `down` against real processes on loopback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from loopstack.core.processes import Supervisor, free_port, pid_alive
from sklearn.linear_model import LinearRegression

from tests.conftest import Stack, run_cli, settings_from, stack_env

pytestmark = pytest.mark.integration


def test_up_starts_a_real_mlflow_that_round_trips_a_model(stack: Stack) -> None:
    uri = stack.settings.mlflow_tracking_uri
    assert httpx.get(f"{uri}/health", timeout=5).text.strip() == "OK"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("foundation-check")
    X = np.arange(20, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(X, 3 * X[:, 0] + 1)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"], serialization_format="pickle"
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert np.allclose(loaded.predict(np.array([[10.0]])), [31.0])


def test_status_reports_every_component_healthy_at_its_url(stack: Stack) -> None:
    result = stack.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    drift_url = f"http://127.0.0.1:{stack.settings.drift.detector_port}"
    for url in (stack.settings.mlflow_tracking_uri, stack.settings.api_url, drift_url):
        assert url in result.stdout
    assert result.stdout.count("healthy") == 7
    assert f"http://127.0.0.1:{stack.settings.serving.rest_port}" in result.stdout
    assert httpx.get(f"{stack.settings.api_url}/healthz").json()["status"] == "ok"


def test_servers_listen_on_loopback_only(stack: Stack) -> None:
    for port in (
        stack.settings.mlflow.port,
        stack.settings.api.port,
        stack.settings.drift.detector_port,
    ):
        listening = Path("/proc/net/tcp").read_text()
        # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex.
        assert f"0100007F:{port:04X}" in listening
        assert f"00000000:{port:04X}" not in listening


def test_second_up_says_what_already_runs(stack: Stack) -> None:
    result = stack.cli("up")
    assert result.returncode == 0, result.stderr
    assert "mlflow already running" in result.stdout
    assert "api already running" in result.stdout
    assert "drift already running" in result.stdout
    assert "serving already running" in result.stdout
    assert "drift-consumer already running" in result.stdout
    assert "feedback already running" in result.stdout


def test_management_api_serves_openapi(stack: Stack) -> None:
    spec = httpx.get(f"{stack.settings.api_url}/openapi.json").json()
    assert spec["info"]["title"] == "Loopstack management API"
    assert "/healthz" in spec["paths"]


def test_down_stops_exactly_what_up_started(stack: Stack, tmp_path: Path) -> None:
    # A second stack that uses the session's MLflow: its `down` must stop only its own API.
    env = stack_env(tmp_path / "state")
    env["LOOPSTACK_MLFLOW__TRACKING_URI"] = stack.settings.mlflow_tracking_uri
    env["LOOPSTACK_DRIFT__DETECTOR_URL"] = f"http://127.0.0.1:{stack.settings.drift.detector_port}"
    assert run_cli(env, "up").returncode == 0
    supervisor = Supervisor(settings_from(env).state_path)
    started = {p.name: p for p in supervisor.recorded()}
    assert set(started) == {"api", "serving", "drift-consumer", "feedback", "loop"} and all(
        p.alive() for p in started.values()
    )
    down = run_cli(env, "down")
    assert (
        down.returncode == 0 and "stopped api" in down.stdout and "stopped serving" in down.stdout
    )
    assert not any(pid_alive(p.pid) for p in started.values())
    assert supervisor.recorded() == []
    assert httpx.get(f"{stack.settings.mlflow_tracking_uri}/health").is_success
    status = run_cli(env, "status")
    assert status.returncode == 1 and "loopstack up" in status.stdout


def test_port_in_use_is_a_one_line_error_naming_the_setting(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    env["LOOPSTACK_MLFLOW__TRACKING_URI"] = "http://127.0.0.1:1"
    env["LOOPSTACK_DRIFT__DETECTOR_URL"] = "http://127.0.0.1:1"
    port = free_port()
    env["LOOPSTACK_API__PORT"] = str(port)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = run_cli(env, "up")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "LOOPSTACK_API__PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_stale_pid_file_names_the_fix_and_down_cleans_it(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    env["LOOPSTACK_MLFLOW__TRACKING_URI"] = "http://127.0.0.1:1"
    env["LOOPSTACK_DRIFT__DETECTOR_URL"] = "http://127.0.0.1:1"
    run_dir = settings_from(env).state_path / "run"
    run_dir.mkdir(parents=True)
    dead = {"name": "api", "pid": 2**22 - 7, "start_time": "1", "argv": ["x"], "url": None,
            "health_url": None, "log": "/dev/null"}  # fmt: skip
    (run_dir / "api.pid").write_text(json.dumps(dead))
    result = run_cli(env, "up")
    assert result.returncode == 2
    assert "stale pid file" in result.stderr and "loopstack down" in result.stderr
    down = run_cli(env, "down")
    assert "removed stale pid file of api" in down.stdout
    assert not (run_dir / "api.pid").exists()


def test_invalid_configuration_names_the_variable(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    env["LOOPSTACK_MLFLOW__PORT"] = "not-a-port"
    result = run_cli(env, "status")
    assert result.returncode == 2
    assert "mlflow.port" in result.stderr and "LOOPSTACK_" in result.stderr


def test_help_lists_process_commands() -> None:
    result = run_cli(stack_env(Path("/nonexistent")), "--help")
    for command in ("up", "down", "status"):
        assert command in result.stdout
