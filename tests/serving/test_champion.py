"""Promote, rollback and deploy through the CLI move what answers, on every protocol, as one.

A real registry (MLflow), the embedded backend of the running inference server, the management
API's models and serving routers on uvicorn, and the CLI through the SDK: after a promote or a
rollback the next answer on v1 REST, v2 REST and gRPC names the new champion; a deploy or a
promote during a shadow is refused with 409 naming it, and `--force` ends it, recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import to_http_parameters
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes import models as models_routes
from loopstack.api.routes import serving as serving_routes
from loopstack.cli import models as models_cli
from loopstack.cli import serving as serving_cli
from loopstack.core.events import EventService, Publisher, open_event_log
from loopstack.core.modelspec import load_model_spec
from loopstack.loop.decisions import DecisionRecorder
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.rollout import RolloutController
from loopstack.loop.store import LoopStore
from loopstack.registry.registry import ModelRegistry
from loopstack.serving.backends.embedded import EmbeddedBackend
from loopstack.serving.deployments import DeploymentService
from loopstack.serving.rest import VERSION_HEADER
from loopstack.serving.traffic import TrafficSplit
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tests.servers import asgi_server

from .conftest import BIKE, Served, bike_full_row, wait_revision
from .test_protocols import _kserve_request, _v2_inputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The models and serving routers on uvicorn over the real registry and backend."""
    log = open_event_log(served.settings)
    publisher = Publisher(log, tmp_path_factory.mktemp("champion") / "api.db")
    registry = ModelRegistry(served.settings.mlflow_tracking_uri, publisher, source="tests")
    service = DeploymentService(registry, EmbeddedBackend(served.settings))
    services = SimpleNamespace(
        settings=served.settings, model_registry=registry, deployment_service=service
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(models_routes.router(services))  # type: ignore[arg-type]
    app.include_router(serving_routes.router(services))
    try:
        with asgi_server(app) as url:
            yield SimpleNamespace(url=url, service=service, registry=registry, log=log)
    finally:
        served.deploy(TrafficSplit(model=BIKE, champion=served.versions["v1"]))
        publisher.close(timeout=5)
        log.close()


def _cli(api: SimpleNamespace, served: Served, *args: str) -> Any:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = served.settings.model_copy(
            update={"api": served.settings.api.model_copy(update={"url": api.url})}
        )

    app.add_typer(models_cli.app, name="models")
    serving_cli.register(app)
    return CliRunner().invoke(app, list(args))


def _answered_by(served: Served) -> dict[str, str]:
    """The version each protocol's next answer names (v1 field, v2 REST field and parameter,
    gRPC field and parameter)."""
    answers = (
        httpx.post(
            f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [bike_full_row()]}
        ),
        httpx.post(
            f"{served.rest}/v2/models/{BIKE}/infer", json={"inputs": _v2_inputs(bike_full_row())}
        ),
    )
    for answer in answers:
        assert answer.headers[VERSION_HEADER] == answer.json()["model_version"]
    v1, v2 = (a.json() for a in answers)
    assert v2["parameters"]["model_version"] == v2["model_version"]

    async def grpc() -> Any:
        client = InferenceGRPCClient(served.grpc)
        try:
            return await client.infer(_kserve_request(bike_full_row()))
        finally:
            await client.close()

    via_grpc = asyncio.run(grpc())
    assert to_http_parameters(via_grpc.parameters)["model_version"] == via_grpc.model_version
    return {"v1": v1["model_version"], "v2": v2["model_version"], "grpc": via_grpc.model_version}


def _serving(api: SimpleNamespace, served: Served) -> dict[str, Any]:
    split: dict[str, Any] = httpx.get(f"{api.url}/v1/models/{BIKE}/traffic").json()["split"]
    wait_revision(served.rest, BIKE, split["revision"], timeout=180)
    return split


def _decisions(api: SimpleNamespace, accept: Any, timeout: float = 15) -> list[dict[str, Any]]:
    """The `decision.v1` data of the decisions topic that `accept` (waits for one at least)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with_data = [i["event"]["data"] for i in EventService(api.log).tail("decisions", 500).items]
        found = [d for d in with_data if d["model"] == BIKE and accept(d)]
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError("no matching decision recorded")


def test_promote_and_rollback_change_the_version_that_answers(
    api: SimpleNamespace, served: Served
) -> None:
    v1, v2 = served.versions["v1"], served.versions["v2"]
    done = _cli(api, served, "deploy", BIKE, "--version", v1)  # a champion deploy is a promote
    assert done.exit_code == 0, done.output
    _serving(api, served)
    assert set(_answered_by(served).values()) == {v1}

    done = _cli(api, served, "models", "promote", BIKE, "--version", v2, "--reason", "better")
    assert done.exit_code == 0, done.output
    assert f"champion is now version {v2}" in done.output
    split = _serving(api, served)
    assert (split["champion"], split["challenger"]) == (v2, None)
    assert _answered_by(served) == {"v1": v2, "v2": v2, "grpc": v2}
    assert api.registry.aliases(BIKE)["champion"] == v2
    promoted = _decisions(api, lambda d: d["kind"] == "promoted" and d["reason"] == "better")
    assert promoted[-1]["version"] == v2 and promoted[-1]["traffic"] == {v2: 100.0}

    done = _cli(api, served, "models", "rollback", BIKE, "--reason", "worse live")
    assert done.exit_code == 0, done.output
    assert f"champion is now version {v1}" in done.output
    _serving(api, served)
    assert _answered_by(served) == {"v1": v1, "v2": v1, "grpc": v1}
    assert api.registry.aliases(BIKE)["champion"] == v1
    rolled = _decisions(api, lambda d: d["kind"] == "rolled_back" and d["reason"] == "worse live")
    assert rolled[-1]["version"] == v1 and rolled[-1]["traffic"] == {v1: 100.0}


def test_a_deploy_or_promote_during_a_shadow_is_refused_and_force_ends_the_rollout(
    api: SimpleNamespace, served: Served, tmp_path: Any
) -> None:
    v1, v2, other = served.versions["v1"], served.versions["v2"], served.versions["failing"]
    assert _cli(api, served, "deploy", BIKE, "--version", v1).exit_code == 0
    api.registry.set_alias(BIKE, "challenger", v2, "test: the loop's next challenger")
    done = _cli(api, served, "deploy", BIKE, "--version", v2, "--shadow")
    assert done.exit_code == 0, done.output
    # The loop's view of this rollout: its controller must not stay stuck once it is ended.
    store = LoopStore(f"sqlite:///{tmp_path / 'loop.db'}")
    with store.engine.begin() as conn:
        store.state(conn, BIKE)
        store.save(conn, BIKE, phase="shadow", champion=v1, challenger=v2, step=0)

    for args in (["deploy", BIKE, "--version", other, "--shadow"],
                 ["deploy", BIKE, "--version", v1],
                 ["models", "promote", BIKE, "--version", other],
                 ["models", "rollback", BIKE]):  # fmt: skip
        refused = _cli(api, served, *args)
        assert refused.exit_code == 4, (args, refused.output)
        assert "HTTP 409" in refused.output and f"challenger v{v2} in shadow" in refused.output
        assert repr(BIKE) in refused.output and "--force" in refused.output
    answer = httpx.post(f"{api.url}/v1/models/{BIKE}/promote", json={"version": other})
    assert answer.status_code == 409 and answer.json()["type"] == "RolloutInProgress"
    split = _serving(api, served)
    assert (split["mode"], split["challenger"]) == ("shadow", v2), "a refusal changed nothing"

    done = _cli(api, served, "deploy", BIKE, "--version", v1, "--force")
    assert done.exit_code == 0, done.output
    split = _serving(api, served)
    assert (split["champion"], split["challenger"], split["mode"]) == (v1, None, "champion")
    assert "challenger" not in api.registry.aliases(BIKE)  # the loop will not shadow it again
    ended = _decisions(api, lambda d: d["kind"] == "rolled_back" and d["version"] == v2
                       and "ended_rollout" in d["evidence"])  # fmt: skip
    assert ended[-1]["evidence"]["ended_rollout"]["mode"] == "shadow"

    controller = RolloutController(
        store, DecisionRecorder(api.service.registry.publisher), api.registry, api.service,
        RolloutEvidence(create_engine("sqlite://")),
        lambda model: load_model_spec(served.settings.models_dir, model),
        lambda run_id: pytest.fail("no pipeline runs here"), lambda model: datetime.now(UTC),
    )  # fmt: skip
    assert controller.tick(BIKE) == "idle"
    assert json.loads(json.dumps(store.states(), default=str))[0]["challenger"] is None
