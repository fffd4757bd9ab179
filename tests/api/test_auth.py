"""Roles on every management endpoint: a role x endpoint matrix, API keys, OIDC JWTs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.core.auth import Role
from loopstack.core.auth.keys import ApiKeyStore, auth_store_url
from loopstack.core.processes import free_port
from loopstack.core.settings import AuthSettings, Settings

from tests.conftest import Stack, run_cli
from tests.servers import asgi_server

pytestmark = pytest.mark.integration

ALL = set(Role)
READ = {"admin", "data-scientist", "deployer", "viewer"}
PUBLIC: set[str] = set()

# Written by hand from the role definitions, not from the app's table: who may call what.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/v1/models"): READ,
    ("GET", "/v1/models/{name}"): READ,
    ("GET", "/v1/models/{name}/versions/{ref}/lineage"): READ,
    ("POST", "/v1/models/{name}/promote"): {"admin", "deployer"},
    ("POST", "/v1/models/{name}/rollback"): {"admin", "deployer"},
    ("POST", "/v1/models/{name}/retrain"): {"admin", "data-scientist"},
    ("POST", "/v1/models/{name}/versions"): {"admin", "data-scientist"},
    ("GET", "/v1/models/{name}/history"): READ,
    ("GET", "/v1/pipelines"): READ,
    ("GET", "/v1/pipelines/runs"): READ,
    ("GET", "/v1/pipelines/runs/{run_id}"): READ,
    ("POST", "/v1/pipelines/runs/{run_id}/cancel"): {"admin", "data-scientist"},
    ("POST", "/v1/pipelines/{name}/runs"): {"admin", "data-scientist"},
    ("POST", "/v1/models/{name}/deployments"): {"admin", "deployer"},
    ("GET", "/v1/models/{name}/traffic"): READ,
    ("GET", "/v1/deployments"): READ,
    ("GET", "/v1/models/{name}/drift"): READ,
    ("POST", "/v1/feedback"): {"admin", "app"},
    ("POST", "/v1/feedback/rebuild"): {"admin"},
    ("GET", "/v1/models/{name}/quality"): READ,
    ("GET", "/v1/predictions/{prediction_id}"): READ,
    ("GET", "/v1/predictions/{prediction_id}/why"): READ,
    ("GET", "/v1/predictions"): READ,
    # Reviewers are people with a data-scientist key, or a review app with an app key.
    ("GET", "/v1/reviews"): READ | {"app"},
    ("POST", "/v1/reviews/{prediction_id}/decision"): {"admin", "data-scientist", "app"},
    ("POST", "/v1/features/materialize"): {"admin", "data-scientist"},
    ("POST", "/v1/features/apply"): {"admin", "data-scientist"},
    ("GET", "/v1/events/dlq"): READ,
    ("POST", "/v1/events/replay"): {"admin"},
    ("GET", "/v1/events/{topic}"): READ,
    ("GET", "/v1/auth/whoami"): {r.value for r in Role},
    ("GET", "/v1/auth/keys"): {"admin"},
    ("POST", "/v1/auth/keys"): {"admin"},
    ("POST", "/v1/auth/keys/{key_id}/revoke"): {"admin"},
    ("GET", "/v1/audit"): READ,
}


def auth_settings(stack: Stack, tmp_path: Path, **auth: Any) -> Settings:
    """The session stack's settings with auth on and a key store of the test's own."""
    section = AuthSettings(enabled=True, store_url=f"sqlite:///{tmp_path / 'auth.db'}", **auth)
    # An outbox of its own: the stack's API process holds the `api` outbox's lock.
    events = stack.settings.events.model_copy(update={"outbox_dir": tmp_path / "outbox"})
    return stack.settings.model_copy(update={"auth": section, "events": events})


def _routes(client: TestClient) -> set[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"no-such-{m.group(1).replace('_', '-')}", path)


@pytest.fixture(scope="module")
def keyed(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TestClient, dict[str, str]]:
    """An auth-enabled API over the session stack, and one API key per role."""
    settings = auth_settings(stack, tmp_path_factory.mktemp("auth"))
    store = ApiKeyStore(auth_store_url(settings))
    tokens = {role.value: store.create(role, f"matrix-{role.value}", "test")[0] for role in Role}
    return TestClient(create_app(settings), raise_server_exceptions=False), tokens


def test_every_route_admits_exactly_the_roles_of_the_table(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = keyed
    routes = _routes(client)
    assert routes == set(EXPECTED), (
        f"routes without a row in EXPECTED: {sorted(routes - set(EXPECTED))}; "
        f"rows without a route: {sorted(set(EXPECTED) - routes)}"
    )
    for (method, path), allowed in sorted(EXPECTED.items()):
        url = _concrete(path)
        body = {"json": {}} if method == "POST" else {}
        anonymous = client.request(method, url, **body)
        if not allowed:
            assert anonymous.status_code not in (401, 403), (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert "Authorization: Bearer" in anonymous.json()["error"]
        for role, token in tokens.items():
            answer = client.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **body
            )
            where = (method, path, role, answer.status_code, answer.text[:200])
            if role in allowed:
                assert answer.status_code not in (401, 403), where
            else:
                assert answer.status_code == 403, where
                error = answer.json()["error"]
                assert all(r in error for r in allowed) and role in error, where


def test_bad_and_revoked_keys_are_401_and_other_schemes_are_refused(
    keyed: tuple[TestClient, dict[str, str]], stack: Stack, tmp_path: Path
) -> None:
    client, tokens = keyed
    viewer = tokens["viewer"]
    forged = viewer[:-4] + ("AAAA" if not viewer.endswith("AAAA") else "BBBB")
    for header in (f"Bearer {forged}", "Bearer lsk_nonsense", f"Basic {viewer}", "Bearer "):
        answer = client.get("/v1/deployments", headers={"Authorization": header})
        assert answer.status_code == 401, header
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    created = client.post(
        "/v1/auth/keys", json={"role": "viewer", "name": "to-revoke"}, headers=admin
    )
    assert created.status_code == 201
    token = created.json()["token"]
    assert (
        client.get("/v1/deployments", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    listed = client.get("/v1/auth/keys", headers=admin).json()
    assert token not in json.dumps(listed) and token.split("_", 2)[2] not in json.dumps(listed)
    revoked = client.post(f"/v1/auth/keys/{created.json()['key_id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    answer = client.get("/v1/deployments", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]
    again = client.post(f"/v1/auth/keys/{created.json()['key_id']}/revoke", headers=admin)
    assert again.status_code == 409


@pytest.fixture()
def served(stack: Stack, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """An auth-enabled API served over real HTTP on loopback (the bootstrap checks the peer)."""
    settings = auth_settings(stack, tmp_path)
    port = free_port()
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": port, "url": None})}
    )
    env = {**stack.env, "LOOPSTACK_API__PORT": str(port), "LOOPSTACK_AUTH__ENABLED": "true",
           "LOOPSTACK_AUTH__STORE_URL": settings.auth.store_url or ""}  # fmt: skip
    with asgi_server(create_app(settings), port):
        yield settings, env


def test_the_first_admin_key_is_created_from_loopback_then_keys_need_admin(
    served: tuple[Settings, dict[str, str]],
) -> None:
    _, env = served
    denied = run_cli(env, "models", "list")
    assert denied.returncode == 6 and "LOOPSTACK_API__TOKEN" in denied.stderr
    first = run_cli(env, "auth", "create-key", "--role", "admin", "--name", "ops")
    assert first.returncode == 0, first.stderr
    admin_token = next(line for line in first.stdout.splitlines() if line.startswith("lsk_"))
    # Bootstrap is over: without a token, creating keys is refused like everything else.
    second = run_cli(env, "auth", "create-key", "--role", "admin")
    assert second.returncode == 6
    as_admin = {**env, "LOOPSTACK_API__TOKEN": admin_token}
    viewer = run_cli(as_admin, "auth", "create-key", "--role", "viewer", "--name", "oncall")
    viewer_token = next(line for line in viewer.stdout.splitlines() if line.startswith("lsk_"))
    as_viewer = {**env, "LOOPSTACK_API__TOKEN": viewer_token}
    me = run_cli(as_viewer, "auth", "whoami")
    assert me.returncode == 0 and "viewer" in me.stdout and "oncall" in me.stdout
    refused = run_cli(as_viewer, "retrain", "bike-demand")
    assert refused.returncode == 6 and "needs role admin or data-scientist" in refused.stderr
    listed = run_cli(as_admin, "auth", "keys")
    assert "oncall" in listed.stdout and "ops" in listed.stdout


class _Jwks(BaseHTTPRequestHandler):
    document: bytes = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture()
def issuer() -> Iterator[tuple[str, Any]]:
    """An OIDC issuer's JWKS on loopback, and its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    handler = type("Jwks", (_Jwks,), {"document": json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()})  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    finally:
        server.shutdown()
        server.server_close()


def _token(key: Any, **claims: Any) -> str:
    body = {"sub": "alice@example.org", "iss": "https://idp.example.org", "aud": "loopstack",
            "exp": int(time.time()) + 300, **claims}  # fmt: skip
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_jwts_from_the_configured_issuer_carry_their_roles(
    stack: Stack, tmp_path: Path, issuer: tuple[str, Any]
) -> None:
    url, key = issuer
    settings = auth_settings(stack, tmp_path, jwks_url=url, jwt_issuer="https://idp.example.org",
                              jwt_audience="loopstack")  # fmt: skip
    client = TestClient(create_app(settings), raise_server_exceptions=False)

    def call(token: str) -> httpx.Response:
        return client.get("/v1/deployments", headers={"Authorization": f"Bearer {token}"})

    assert call(_token(key, roles=["viewer"])).status_code == 200
    me = client.get(
        "/v1/auth/whoami", headers={"Authorization": f"Bearer {_token(key, roles='deployer')}"}
    )
    assert me.json() == {"subject": "alice@example.org", "roles": ["deployer"], "kind": "jwt"}
    no_role = call(_token(key))
    assert no_role.status_code == 403 and "alice@example.org has no role" in no_role.json()["error"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        _token(key, roles=["viewer"], aud="someone-else"),
        _token(key, roles=["viewer"], iss="https://evil.example.org"),
        _token(key, roles=["viewer"], exp=int(time.time()) - 60),
        _token(other_key, roles=["admin"]),
        jwt.encode(
            {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60},
            "secret",
            algorithm="HS256",
        ),
    ):
        answer = call(bad)
        assert answer.status_code == 401 and answer.json()["error"].startswith(
            ("invalid token", "cannot")
        ), answer.text
