"""Bearer tokens on inference (`auth.inference`): REST v1/v2 and gRPC, roles app/deployer/admin."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kserve import InferenceGRPCClient
from loopstack.core.auth import Role
from loopstack.core.auth.keys import ApiKeyStore, auth_store_url
from loopstack.core.processes import Supervisor, free_port
from loopstack.core.settings import AuthSettings
from loopstack.features import store as feature_store
from loopstack.serving.stack import serving_process
from loopstack.serving.traffic import TrafficSplit

from tests.serving.conftest import BIKE, Served, bike_full_row
from tests.serving.test_protocols import _kserve_request, _v2_inputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guarded(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, dict[str, str]]]:
    """A second inference server over the same models, with auth on inference, and keys."""
    base = tmp_path_factory.mktemp("guarded")
    settings = served.settings.model_copy(update={
        "state_dir": base / "state",
        "serving": served.settings.serving.model_copy(update={"rest_port": free_port(), "grpc_port": free_port()}),
        "auth": AuthSettings(inference=True, store_url=f"sqlite:///{base / 'auth.db'}"),
    })  # fmt: skip
    keys = ApiKeyStore(auth_store_url(settings))
    tokens = {r.value: keys.create(r, f"inference-{r.value}", "test")[0] for r in Role}
    supervisor = Supervisor(settings.state_path)
    running = supervisor.start(serving_process(settings))
    try:
        feature_store.apply(settings)  # the runtime opens the feature views of its state dir
        supervisor.wait_healthy(running, timeout=120)
        rest = f"http://{settings.host}:{settings.serving.rest_port}"
        server = Served(
            settings, rest, f"{settings.host}:{settings.serving.grpc_port}", served.versions
        )
        server.deploy(TrafficSplit(model=BIKE, champion=served.versions["v1"]), timeout=120)
        yield server, tokens
    finally:
        supervisor.stop("serving", grace=5)


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_rest_inference_needs_an_inference_role_and_health_stays_open(
    guarded: tuple[Served, dict[str, str]],
) -> None:
    server, tokens = guarded
    v1 = f"{server.rest}/v1/models/{BIKE}:predict"
    v2 = f"{server.rest}/v2/models/{BIKE}/infer"
    bodies = {v1: {"instances": [bike_full_row()]}, v2: {"inputs": _v2_inputs(bike_full_row())}}
    for url, body in bodies.items():
        missing = httpx.post(url, json=body)
        assert missing.status_code == 401 and "Bearer" in missing.json()["error"], missing.text
        forged = httpx.post(url, json=body, headers=_bearer(tokens["app"][:-2] + "xx"))
        assert forged.status_code == 401
        for role in ("viewer", "data-scientist"):
            refused = httpx.post(url, json=body, headers=_bearer(tokens[role]))
            assert refused.status_code == 403 and "needs role app" in refused.json()["error"]
        for role in ("app", "deployer", "admin"):
            answer = httpx.post(url, json=body, headers=_bearer(tokens[role]))
            assert answer.status_code == 200, (role, answer.text)
    assert httpx.get(f"{server.rest}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.rest}/metrics").status_code == 200


def test_grpc_inference_reads_the_token_from_metadata(
    guarded: tuple[Served, dict[str, str]],
) -> None:
    server, tokens = guarded

    async def call(token: str | None) -> Any:
        client = InferenceGRPCClient(server.grpc)
        try:
            headers = [("authorization", f"Bearer {token}")] if token else None
            return await client.infer(_kserve_request(bike_full_row()), headers=headers)
        finally:
            await client.close()

    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                        (tokens["viewer"], grpc.StatusCode.PERMISSION_DENIED)):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            asyncio.run(call(token))
        assert refused.value.code() == code, refused.value.details()
    answer = asyncio.run(call(tokens["app"]))
    assert answer.model_version == server.versions["v1"]


def test_revoking_a_key_stops_inference_with_it_at_once(
    guarded: tuple[Served, dict[str, str]], tmp_path: Path
) -> None:
    server, _ = guarded
    keys = ApiKeyStore(auth_store_url(server.settings))
    token, key = keys.create(Role.APP, "short-lived", "test")
    body = {"instances": [bike_full_row()]}
    url = f"{server.rest}/v1/models/{BIKE}:predict"
    assert httpx.post(url, json=body, headers=_bearer(token)).status_code == 200
    keys.revoke(key.key_id)
    assert httpx.post(url, json=body, headers=_bearer(token)).status_code == 401
