"""The management API over TLS: the real server process on HTTPS, its health check, the SDK and
the CLI trusting the CA; plain-http and untrusting clients fail; mutual TLS refuses clients
without a certificate of its client CA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopstack.api.app import create_app
from loopstack.cli.stack import embedded_components, stack_supervisor
from loopstack.client import LoopstackClient
from loopstack.core.errors import ConfigurationError, Unavailable
from loopstack.core.processes import free_port
from loopstack.core.settings import Settings, TlsSettings
from loopstack.core.tls import ClientTLS

from tests.conftest import PROJECT_DIR, run_cli
from tests.servers import asgi_server
from tests.tls import CLOSED_WITHOUT_ANSWER, Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_api(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """`python -m loopstack.api.server` with a certificate, started as `loopstack up` does."""
    base = tmp_path_factory.mktemp("api-tls")
    settings = Settings(
        project_dir=PROJECT_DIR,
        state_dir=base / "state",
        api={"port": free_port()},
        tls=TlsSettings(cert_file=pki.cert, key_file=pki.key, ca_file=pki.ca),
    )
    (component,) = [c for c in embedded_components(settings) if c.spec.name == "api"]
    assert component.spec.health_url == f"https://127.0.0.1:{settings.api.port}/healthz"
    supervisor = stack_supervisor(settings)
    running = supervisor.start(component.spec)
    try:
        supervisor.wait_healthy(running, timeout=component.start_timeout_s)  # over https
        assert running.healthy(supervisor.verify) and not running.healthy()  # certifi: untrusted
        yield settings
    finally:
        supervisor.stop("api", grace=5)


def _cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A CLI on another machine: only the API's URL (and what it trusts) configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPSTACK_")}
    return {**env, "LOOPSTACK_PROJECT_DIR": str(PROJECT_DIR), "LOOPSTACK_API__URL": settings.api_url,
            "COLUMNS": "200", **extra}  # fmt: skip


def test_the_sdk_and_the_cli_reach_the_api_over_https_trusting_its_ca(
    https_api: Settings, pki: Pki
) -> None:
    assert https_api.api_url.startswith("https://127.0.0.1:")
    with LoopstackClient.from_settings(https_api) as client:
        assert client.health()["status"] == "ok"
    answer = httpx.get(f"{https_api.api_url}/healthz", verify=ClientTLS(pki.ca).ssl_context())
    assert answer.status_code == 200
    done = run_cli(_cli_env(https_api, LOOPSTACK_TLS__CA_FILE=str(pki.ca)), "auth", "whoami")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "admin" in done.stdout  # auth is off: the API takes everyone for an admin


def test_plain_http_and_untrusting_clients_fail(https_api: Settings, pki: Pki) -> None:
    port = https_api.api.port
    with pytest.raises(CLOSED_WITHOUT_ANSWER):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/healthz")  # certifi's CAs only
    rogue = ClientTLS(pki.rogue_ca).ssl_context()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/healthz", verify=rogue)
    with (
        LoopstackClient(https_api.api_url) as client,
        pytest.raises(ConfigurationError, match="LOOPSTACK_TLS__CA_FILE"),
    ):
        client.health()
    untrusting = run_cli(_cli_env(https_api), "auth", "whoami")
    assert untrusting.returncode == 2, untrusting.stdout + untrusting.stderr
    assert "does not trust" in untrusting.stderr and "LOOPSTACK_TLS__CA_FILE" in untrusting.stderr
    with (
        LoopstackClient(f"http://127.0.0.1:{port}") as client,
        pytest.raises(Unavailable, match="use https://"),
    ):
        client.health()


def test_mutual_tls_refuses_clients_without_a_certificate_of_its_ca(
    pki: Pki, tmp_path: Path
) -> None:
    settings = Settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        tls=TlsSettings(cert_file=pki.cert, key_file=pki.key, client_ca_file=pki.ca,
                        ca_file=pki.ca, client_cert_file=pki.client_cert,
                        client_key_file=pki.client_key),
    )  # fmt: skip
    with asgi_server(create_app(settings), tls=settings.server_tls) as url:
        with LoopstackClient(url, verify=settings.client_tls.ssl_context()) as client:
            assert client.get("/v1/auth/whoami")["roles"]
        for anonymous in (
            ClientTLS(pki.ca),
            ClientTLS(pki.ca, pki.rogue_client_cert, pki.rogue_client_key),
        ):
            with (
                LoopstackClient(url, verify=anonymous.ssl_context()) as client,
                pytest.raises(Unavailable, match="LOOPSTACK_TLS__CLIENT_CERT_FILE"),
            ):
                client.health()
        env = _cli_env(settings, LOOPSTACK_API__URL=url, LOOPSTACK_TLS__CA_FILE=str(pki.ca))
        refused = run_cli(env, "auth", "whoami")
        assert refused.returncode == 5 and "mutual TLS" in refused.stderr, refused.stderr
        env |= {"LOOPSTACK_TLS__CLIENT_CERT_FILE": str(pki.client_cert),
                "LOOPSTACK_TLS__CLIENT_KEY_FILE": str(pki.client_key)}  # fmt: skip
        admitted = run_cli(env, "auth", "whoami")
        assert admitted.returncode == 0, admitted.stdout + admitted.stderr


def test_a_tls_client_of_a_plain_http_server_is_told_so(tmp_path: Path) -> None:
    with asgi_server(create_app(Settings(state_dir=tmp_path))) as url:
        https = url.replace("http://", "https://")
        with (
            LoopstackClient(https) as client,
            pytest.raises(ConfigurationError, match="does not speak TLS: use an http:// URL"),
        ):
            client.health()
