"""`loopstack up`, `status` and `down` against real processes on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from loopstack.core.processes import Supervisor, free_port, pid_alive
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

from tests.conftest import PROJECT_DIR, Stack, run_cli, running_stack, settings_from, stack_env

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
    assert result.stdout.count("healthy") == 8  # the seven servers and the supervisor
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
    assert "supervisor already running" in result.stdout


def test_management_api_serves_openapi(stack: Stack) -> None:
    spec = httpx.get(f"{stack.settings.api_url}/openapi.json").json()
    assert spec["info"]["title"] == "Loopstack management API"
    assert "/healthz" in spec["paths"]


BROKEN_SPEC = "name: h4-broken\ntask: [regression\n"
TOY = "h4-toy"
TOY_INPUTS = ["temp", "hum"]


def _project_with_a_broken_spec(base: Path) -> Path:
    """A project whose models are a copy of bike-demand (renamed) and a malformed spec."""
    project = base / "project"
    toy = project / "models" / TOY
    toy.mkdir(parents=True)
    spec = yaml.safe_load((PROJECT_DIR / "models" / "bike-demand" / "model.yaml").read_text())
    (toy / "model.yaml").write_text(yaml.safe_dump({**spec, "name": TOY}))
    shutil.copy(PROJECT_DIR / "models" / "bike-demand" / "train.py", toy / "train.py")
    (project / "models" / "h4-broken").mkdir()
    (project / "models" / "h4-broken" / "model.yaml").write_text(BROKEN_SPEC)
    for shared in ("feature_repo", "pipelines"):
        (project / shared).symlink_to(PROJECT_DIR / shared)
    return project


@pytest.fixture(scope="module")
def second(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second stack on the session's MLflow and detector server, over a project with a
    malformed second spec: its `up` starts only its own API, server, consumers and supervisor."""
    base = tmp_path_factory.mktemp("second")
    env = stack_env(base / "state")
    env["LOOPSTACK_PROJECT_DIR"] = str(_project_with_a_broken_spec(base))
    env["LOOPSTACK_MLFLOW__TRACKING_URI"] = stack.settings.mlflow_tracking_uri
    env["LOOPSTACK_DRIFT__DETECTOR_URL"] = f"http://127.0.0.1:{stack.settings.drift.detector_port}"
    with running_stack(env) as second:
        yield second


def _register_toy(uri: str) -> str:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("stack-tests")
    X = pd.DataFrame({"temp": [0.1, 0.5, 0.9, 0.3], "hum": [0.2, 0.4, 0.6, 0.8]})
    model = LinearRegression().fit(X, 100 * X["temp"])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            pip_requirements=["scikit-learn"],
            serialization_format="pickle",
            registered_model_name=TOY,
        )
    assert info.registered_model_version is not None
    return str(info.registered_model_version)


def test_a_malformed_spec_takes_out_only_its_own_model(second: Stack) -> None:
    version = _register_toy(second.settings.mlflow_tracking_uri)
    api = second.settings.api_url
    # Generous timeouts: the API imports MLflow on its first call, slow on a busy 2-core host.
    listed = {m["model"]: m for m in httpx.get(f"{api}/v1/models", timeout=180).json()}
    deploy = httpx.post(f"{api}/v1/models/{TOY}/deployments", json={"version": version},
                        timeout=180)  # fmt: skip
    assert deploy.status_code == 201, deploy.text
    assert listed[TOY]["status"] == "ok" and listed[TOY]["task"] == "regression"
    broken = listed["h4-broken"]
    assert (
        broken["status"] == "broken"
        and "h4-broken/model.yaml is not valid YAML" in (broken["error"])
    )
    shown = httpx.get(f"{api}/v1/models/h4-broken", timeout=60).json()
    assert shown["status"] == "broken" and "line 3" in shown["error"]
    rest = f"http://127.0.0.1:{second.settings.serving.rest_port}"
    deadline = time.monotonic() + 120
    while True:
        answer = httpx.post(
            f"{rest}/v1/models/{TOY}:predict",
            json={"instances": [{"temp": 0.5, "hum": 0.5}]},
            timeout=30,
        )
        # 404 until the server reads the new deployment, 503 while the version loads.
        if answer.status_code not in (404, 503) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] == pytest.approx(50.0)
    status = second.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "model h4-broken is broken" in status.stdout and "not valid YAML" in status.stdout
    models = second.cli("models", "list")
    assert models.returncode == 0 and TOY in models.stdout, models.stdout + models.stderr


def _wait_restarted(stack: Stack, names: set[str], restarts: int, timeout: float) -> None:
    supervisor = Supervisor(stack.settings.state_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {n: supervisor.read(n) for n in names}
        if all(p is not None and p.restarts >= restarts and p.healthy() for p in found.values()):
            return
        time.sleep(1)
    raise AssertionError(f"not all of {names} came back: {found}")


def _cells(line: str) -> list[str]:
    """The cells of one row of a rich table."""
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_killed_consumers_come_back_by_themselves(second: Stack) -> None:
    supervisor = Supervisor(second.settings.state_path)
    killed = {"feedback", "drift-consumer", "loop"}
    before = {n: supervisor.read(n) for n in killed}
    for process in before.values():
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
    _wait_restarted(second, killed, 1, timeout=240)
    after = {n: supervisor.read(n) for n in killed}
    assert all(after[n].pid != before[n].pid for n in killed)  # type: ignore[union-attr]
    status = second.cli("status")
    assert status.returncode == 0, status.stdout
    rows = {cells[0]: cells for cells in map(_cells, status.stdout.splitlines()) if cells}
    for name in killed:
        assert rows[name][1] == "healthy" and rows[name][4].startswith("1 (last "), rows[name]


def test_up_starts_again_what_died_while_no_supervisor_ran(second: Stack) -> None:
    supervisor = Supervisor(second.settings.state_path)
    watchdog, feedback = supervisor.read("supervisor"), supervisor.read("feedback")
    assert watchdog is not None and feedback is not None
    os.kill(watchdog.pid, signal.SIGKILL)
    os.kill(feedback.pid, signal.SIGKILL)
    time.sleep(1)
    status = second.cli("status")
    assert status.returncode == 1 and "stale" in status.stdout and "loopstack up" in status.stdout
    up = second.cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "feedback had died" in up.stdout and "supervisor had died" in up.stdout
    again = supervisor.read("feedback")
    assert again is not None and again.healthy() and again.restarts == feedback.restarts + 1


def test_down_stops_exactly_what_up_started(stack: Stack, second: Stack) -> None:
    # The second stack uses the session's MLflow: its `down` must stop only its own processes.
    supervisor = Supervisor(second.settings.state_path)
    started = {p.name: p for p in supervisor.recorded()}
    assert set(started) == {
        "api",
        "serving",
        "drift-consumer",
        "feedback",
        "loop",
        "supervisor",
    } and all(p.alive() for p in started.values())
    down = second.cli("down")
    assert down.returncode == 0
    assert down.stdout.index("stopped supervisor") < down.stdout.index("stopped api")
    assert not any(pid_alive(p.pid) for p in started.values())
    assert supervisor.recorded() == []
    assert httpx.get(f"{stack.settings.mlflow_tracking_uri}/health").is_success
    status = second.cli("status")
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


def test_a_stale_pid_file_is_shown_and_down_cleans_it(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    env["LOOPSTACK_MLFLOW__TRACKING_URI"] = "http://127.0.0.1:1"
    env["LOOPSTACK_DRIFT__DETECTOR_URL"] = "http://127.0.0.1:1"
    run_dir = settings_from(env).state_path / "run"
    run_dir.mkdir(parents=True)
    dead = {"name": "api", "pid": 2**22 - 7, "start_time": "1", "argv": ["x"], "url": None,
            "health_url": None, "log": "/dev/null"}  # fmt: skip
    (run_dir / "api.pid").write_text(json.dumps(dead))
    status = run_cli(env, "status")
    assert status.returncode == 1 and "stale" in status.stdout and "loopstack up" in status.stdout
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
