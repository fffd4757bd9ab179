"""MLflow stops answering during a deploy: the API says so within 5 s, naming MLflow, and the
deploy it reported failed is never applied afterwards; a retry with the same Idempotency-Key,
once MLflow is back, applies it exactly once.

Its own MLflow server process (the session's is never stopped) and the management API in this
process over it. SIGSTOP is a hung MLflow (connections accepted, never answered), SIGTERM a
stopped one (connections refused).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.core.processes import ProcessSpec, RunningProcess, Supervisor, free_port
from loopstack.core.settings import Settings
from loopstack.registry.timeouts import mlflow_client_env
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli
from tests.servers import asgi_server

pytestmark = pytest.mark.integration

MODEL = "credit-default"
PROJECT_DIR = Path(__file__).resolve().parents[2]
REPORTED_WITHIN_S = 5.0
QUIET_S = 8.0
"""How long nothing may change after a failed deploy: well past the 3 s an MLflow call may take
(the old late applies came 30 s and 4 min later, from MLflow's client retrying for ~4 min in a
worker thread; that thread is gone here, which `_no_work_left` checks directly)."""


@dataclass
class OwnMlflow:
    """An MLflow server of this test's own, started again on the same port and database."""

    supervisor: Supervisor
    spec: ProcessSpec
    running: RunningProcess

    def start(self) -> None:
        self.running = self.supervisor.start(self.spec)
        self.supervisor.wait_healthy(self.running, 180)

    def signal(self, signum: int) -> None:
        os.killpg(self.running.pid, signum)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnMlflow]:
    state = tmp_path_factory.mktemp("mlflow-outage")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination", str(state / "artifacts"),
        "--serve-artifacts", "--workers", "1",
    ]  # fmt: skip
    spec = ProcessSpec(
        name="mlflow",
        argv=argv,
        url=url,
        health_url=f"{url}/health",
        port=port,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    supervisor = Supervisor(state / "supervisor")
    server = OwnMlflow(supervisor, spec, supervisor.start(spec))
    try:
        supervisor.wait_healthy(server.running, 180)
        yield server
    finally:
        with suppress(ProcessLookupError):  # a stopped test may leave it frozen
            server.signal(signal.SIGCONT)
        supervisor.stop("mlflow", grace=3)


@dataclass(frozen=True)
class Deployed:
    """The API, MLflow's client, and the model deployed through them."""

    client: TestClient
    mlflow: MlflowClient
    model: str


@pytest.fixture
def api(
    mlflow_server: OwnMlflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployed]:
    """The management API over the test's MLflow, with two registered versions: v1 the deployed
    champion, v2 in shadow against it (the rollout a failed deploy once ended)."""
    for name, value in mlflow_client_env(Settings().mlflow).items():
        monkeypatch.setenv(name, value)  # what `python -m loopstack.api.server` sets at start
    uri = mlflow_server.spec.url or ""
    settings = Settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        mlflow={"tracking_uri": uri},
        loop={"models": []},
    )
    mlflow = MlflowClient(uri, registry_uri=uri)
    name = f"{MODEL}-{tmp_path.name[-12:]}"
    mlflow.create_registered_model(name)
    run = mlflow.create_run(experiment_id="0").info.run_id  # deploys never load the model
    for _ in range(2):
        mlflow.create_model_version(name, source=f"runs:/{run}/model", run_id=run)
    with TestClient(create_app(settings)) as client:
        assert _deploy(client, name, {"version": "1"}).status_code == 201
        assert _deploy(client, name, {"version": "2", "shadow": True}).status_code == 201
        yield Deployed(client, mlflow, name)


def _deploy(client: TestClient, model: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/models/{model}/deployments", json=body, headers=headers)


def _state(client: TestClient, mlflow: MlflowClient, model: str) -> tuple[Any, ...]:
    split = client.get(f"/v1/models/{model}/traffic").json()["split"]
    found = mlflow.get_registered_model(model)
    return split["champion"], split.get("challenger"), split.get("mode"), dict(found.aliases)


def _no_work_left() -> bool:
    """No thread of this process is inside a deploy or an MLflow call of the registry."""
    watched = ("serving/deployments.py", "registry/registry.py")
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_filename.endswith(watched):
                return False
            frame = frame.f_back  # type: ignore[assignment]
    return True


def _assert_nothing_applied(
    client: TestClient, mlflow: MlflowClient, model: str, before: tuple[Any, ...]
) -> None:
    until = time.monotonic() + QUIET_S
    while time.monotonic() < until:
        assert _no_work_left()
        assert _state(client, mlflow, model) == before
        time.sleep(0.5)


@pytest.mark.parametrize("outage", ["hung (SIGSTOP)", "stopped (SIGTERM)"])
def test_a_deploy_during_an_mlflow_outage_fails_fast_and_is_never_applied_later(
    api: Deployed, mlflow_server: OwnMlflow, outage: str
) -> None:
    client, mlflow, model = api.client, api.mlflow, api.model
    before = _state(client, mlflow, model)
    assert before[:3] == ("1", "2", "shadow")
    promote = {"version": "2", "force": True}  # ends the shadow: the deploy the issue lost
    hung = outage.startswith("hung")
    if hung:
        mlflow_server.signal(signal.SIGSTOP)
    else:
        mlflow_server.supervisor.stop("mlflow", grace=5)  # SIGTERM to its group, then reaped
    try:
        started = time.monotonic()
        failed = _deploy(client, model, promote, key="promote-v2")
        elapsed = time.monotonic() - started
    finally:
        if hung:
            mlflow_server.signal(signal.SIGCONT)
        else:
            mlflow_server.start()
    assert failed.status_code == 503, failed.text
    assert elapsed <= REPORTED_WITHIN_S, f"reported after {elapsed:.1f} s"
    reason = failed.json()["error"]
    assert f"MLflow at {mlflow_server.spec.url} is not answering" in reason
    assert ("timed out after 3 s" if hung else "connection refused") in reason
    assert "loopstack up" in reason

    _assert_nothing_applied(client, mlflow, model, before)

    applied = _deploy(client, model, promote, key="promote-v2")
    assert applied.status_code == 201, applied.text
    replayed = _deploy(client, model, promote, key="promote-v2")
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json() == applied.json()
    champion, challenger, _, aliases = _state(client, mlflow, model)
    assert (champion, challenger, aliases.get("champion")) == ("2", None, "2")
    history = json.loads(mlflow.get_registered_model(model).tags["loopstack.alias_history"])
    moves = [h for h in history if h["alias"] == "champion" and h["version"] == "2"]
    assert len(moves) == 1, history


def test_pipeline_run_with_mlflow_down_prints_the_cause_in_one_line(tmp_path: Path) -> None:
    """The runner's cause reaches the CLI: not "the runner process ended without finishing"."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        mlflow={"tracking_uri": dead},
        pipelines={"fork_server": False},  # the runner stops before any step: no warm imports
        loop={"models": []},
    )
    with asgi_server(create_app(settings)) as url:
        env = {**os.environ, **settings.as_env(), "LOOPSTACK_API__URL": url, "COLUMNS": "300"}
        ran = run_cli(env, "pipeline", "run", "train", "--model", MODEL, timeout=120)
    assert ran.returncode != 0
    (line,) = [text for text in ran.stderr.splitlines() if text.startswith("error:")]
    assert f"error: MLflow at {dead} is not answering:" in line
    assert "loopstack up" in line and "Traceback" not in ran.stdout + ran.stderr
