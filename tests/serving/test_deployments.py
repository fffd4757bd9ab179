"""`loopstack deploy` / `loopstack traffic` through the management API's serving routes.

A real registry (MLflow), the embedded backend of the running inference server and the API
router served by uvicorn: a deploy over HTTP is what the server then serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
import typer
from fastapi import FastAPI
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes.serving import router
from loopstack.cli import serving as serving_cli
from loopstack.core.events import Publisher, open_event_log
from loopstack.registry.registry import ModelRegistry
from loopstack.serving.backends.embedded import EmbeddedBackend
from loopstack.serving.deployments import DeploymentService
from loopstack.serving.traffic import TrafficSplit
from typer.testing import CliRunner

from tests.servers import asgi_server

from .conftest import BIKE, Served, bike_full_row, wait_revision

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The serving router on a real uvicorn server, over the real registry and backend."""
    log = open_event_log(served.settings)
    publisher = Publisher(log, tmp_path_factory.mktemp("api") / "api.db")
    registry = ModelRegistry(served.settings.mlflow_tracking_uri, publisher, source="tests")
    registry.set_alias(BIKE, "challenger", served.versions["v2"], "serving tests")
    services = SimpleNamespace(
        settings=served.settings,
        deployment_service=DeploymentService(registry, EmbeddedBackend(served.settings)),
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router(services))
    try:
        with asgi_server(app) as url:
            yield url
    finally:
        served.deploy(TrafficSplit(model=BIKE, champion=served.versions["v1"]))
        publisher.close(timeout=5)
        log.close()


def _cli(api: str, served: Served, *args: str) -> typer.testing.Result:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = served.settings.model_copy(
            update={"api": served.settings.api.model_copy(update={"url": api})}
        )

    serving_cli.register(app)
    return CliRunner().invoke(app, list(args))


def test_deploy_resolves_the_alias_and_the_server_follows(api: str, served: Served) -> None:
    v1, v2 = served.versions["v1"], served.versions["v2"]
    done = _cli(api, served, "deploy", BIKE, "--version", v1)
    assert done.exit_code == 0, done.output
    done = _cli(api, served, "deploy", BIKE, "--version", "challenger", "--canary", "100")
    assert done.exit_code == 0, done.output
    assert f"challenger -> v{v2}" in done.output
    split = httpx.get(f"{api}/v1/models/{BIKE}/traffic").json()["split"]
    assert (split["champion"], split["challenger"], split["mode"], split["canary_percent"]) == (
        v1,
        v2,
        "canary",
        100,
    )
    wait_revision(served.rest, BIKE, split["revision"])
    answer = httpx.post(
        f"{served.rest}/v1/models/{BIKE}:predict", json={"instances": [bike_full_row()]}
    ).json()
    assert (answer["model_version"], answer["route"]) == (v2, "canary")
    listing = _cli(api, served, "traffic")
    assert listing.exit_code == 0 and BIKE in listing.output


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["--version", "999"], 3, "999"),
        (["--version", "1", "--canary", "10", "--shadow"], 2, "not both"),
    ],
)
def test_deploy_errors_name_the_fix(
    api: str, served: Served, args: list[str], code: int, reason: str
) -> None:
    done = _cli(api, served, "deploy", BIKE, *args)
    assert done.exit_code == code, done.output
    assert reason in done.output


def test_traffic_of_an_undeployed_model_is_not_found(api: str, served: Served) -> None:
    answer = httpx.get(f"{api}/v1/models/never-deployed/traffic")
    assert answer.status_code == 404 and "never deployed" in answer.json()["error"]
