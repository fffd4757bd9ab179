"""The inference server over mutual TLS: REST v2 (KServe's REST client, httpx) and gRPC (KServe's
gRPC client) with a client certificate of the trusted CA; plaintext, untrusting and
certificate-less clients fail; the stack's health check speaks https with the client cert."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import to_http_parameters
from loopstack.cli.stack import stack_supervisor
from loopstack.core.processes import free_port
from loopstack.core.settings import TlsSettings
from loopstack.core.tls import ClientTLS
from loopstack.features import store as feature_store
from loopstack.serving.stack import serving_process
from loopstack.serving.traffic import TrafficSplit

from tests.serving.conftest import BIKE, Served, bike_full_row
from tests.serving.test_protocols import _kserve_request, _v2_inputs
from tests.tls import CLOSED_WITHOUT_ANSWER, Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(
    served: Served, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Pki]]:
    """A second inference server over the same models, REST and gRPC on mutual TLS."""
    base = tmp_path_factory.mktemp("tls")
    pki = make_pki(base / "pki")
    tls = TlsSettings(
        cert_file=pki.cert,
        key_file=pki.key,
        client_ca_file=pki.ca,
        ca_file=pki.ca,
        client_cert_file=pki.client_cert,
        client_key_file=pki.client_key,
    )
    settings = served.settings.model_copy(update={
        "state_dir": base / "state",
        "serving": served.settings.serving.model_copy(update={"rest_port": free_port(), "grpc_port": free_port()}),
        "tls": tls,
    })  # fmt: skip
    spec = serving_process(settings)
    assert spec.health_url == f"https://127.0.0.1:{settings.serving.rest_port}/v2/health/live"
    supervisor = stack_supervisor(settings)  # health checks present the client certificate
    running = supervisor.start(spec)
    try:
        feature_store.apply(settings)  # the runtime opens the feature views of its state dir
        supervisor.wait_healthy(running, timeout=120)
        assert running.healthy(supervisor.verify) and not running.healthy()
        server = Served(settings, spec.url or "", f"{settings.host}:{settings.serving.grpc_port}",
                        served.versions, verify=supervisor.verify)  # fmt: skip
        server.deploy(TrafficSplit(model=BIKE, champion=served.versions["v1"]), timeout=120)
        yield server, pki
    finally:
        supervisor.stop("serving", grace=5)


def test_rest_v2_over_https_needs_a_client_certificate_of_the_ca(
    secured: tuple[Served, Pki],
) -> None:
    server, pki = secured
    assert server.rest.startswith("https://")
    url = f"{server.rest}/v2/models/{BIKE}/infer"
    body = {"inputs": _v2_inputs(bike_full_row())}
    answer = httpx.post(url, json=body, verify=server.verify)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == server.versions["v1"]

    async def kserve_client() -> Any:
        config = RESTConfig(protocol="v2", verify=server.verify)
        client = InferenceRESTClient(config)
        try:
            return await client.infer(server.rest, _kserve_request(bike_full_row()), BIKE)
        finally:
            await client.close()

    via_kserve = asyncio.run(kserve_client())
    assert to_http_parameters(via_kserve.parameters)["model_version"] == server.versions["v1"]
    plain = server.rest.replace("https://", "http://")
    with pytest.raises(CLOSED_WITHOUT_ANSWER):
        httpx.post(f"{plain}/v2/models/{BIKE}/infer", json=body)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.post(url, json=body)  # certifi's CAs do not know the test CA
    for refused in (
        ClientTLS(pki.ca),
        ClientTLS(pki.ca, pki.rogue_client_cert, pki.rogue_client_key),
    ):
        with pytest.raises(CLOSED_WITHOUT_ANSWER):
            httpx.post(url, json=body, verify=refused.ssl_context())


def test_grpc_over_tls_needs_a_client_certificate_and_refuses_plaintext(
    secured: tuple[Served, Pki],
) -> None:
    server, pki = secured

    async def infer(**channel: Any) -> Any:
        client = InferenceGRPCClient(server.grpc, **channel)  # its channel needs a loop
        try:
            return await client.infer(_kserve_request(bike_full_row()))
        finally:
            await client.close()

    trusted = asyncio.run(
        infer(use_ssl=True, root_certificates=str(pki.ca), private_key=str(pki.client_key),
              certificate_chain=str(pki.client_cert))
    )  # fmt: skip
    assert trusted.model_version == server.versions["v1"]
    anonymous = {"creds": grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())}
    for refused in (anonymous, {}):  # TLS without a client certificate; plaintext
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            asyncio.run(infer(retries=0, **refused))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
