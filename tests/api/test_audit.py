"""The audit trail: management actions and refusals recorded with who, what and the outcome."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.core.auth import Role
from loopstack.core.auth.keys import ApiKeyStore, auth_store_url

from tests.api.test_auth import auth_settings
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def _trail(stack: Stack, *args: str) -> list[dict]:
    shown = stack.cli("audit", "--export", "jsonl", *args)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]


def test_actions_and_refusals_are_recorded_with_actor_outcome_and_masked_secrets(
    stack: Stack, tmp_path: Path
) -> None:
    settings = auth_settings(stack, tmp_path)
    keys = ApiKeyStore(auth_store_url(settings))
    admin_token, admin = keys.create(Role.ADMIN, "audit-admin", "test")
    viewer_token, viewer = keys.create(Role.VIEWER, "audit-viewer", "test")
    with TestClient(create_app(settings)) as client:  # leaving it flushes the outbox
        refused = client.post(
            "/v1/models/bike-demand/promote", json={"reason": "trying"},
            headers={"Authorization": f"Bearer {viewer_token}"},
        )  # fmt: skip
        assert refused.status_code == 403
        created = client.post(
            "/v1/auth/keys", json={"role": "app", "name": "audit-app"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )  # fmt: skip
        assert created.status_code == 201
        assert client.post("/v1/auth/keys", json={"role": "admin"}).status_code == 401
    token = created.json()["token"]

    viewer_actor = f"key:{viewer.key_id}:audit-viewer"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the loop controller applies the audit topic
        mine = _trail(stack, "--since", "2000-01-01")
        mine = [r for r in mine if r["actor"] in (viewer_actor, f"key:{admin.key_id}:audit-admin")
                or (r["actor"] == "unauthenticated" and r["target"] == "/v1/auth/keys")]  # fmt: skip
        if len(mine) >= 3:
            break
        time.sleep(1)
    denied = next(r for r in mine if r["actor"] == viewer_actor)
    assert denied["action"] == "models.promote" and denied["outcome"] == "denied"
    assert denied["status"] == 403 and "needs role admin or deployer" in denied["reason"]
    assert denied["model"] == "bike-demand" and denied["roles"] == ["viewer"]
    assert denied["params"]["body"] == {"reason": "trying"}
    done = next(r for r in mine if r["action"] == "auth.create_key" and r["outcome"] == "ok")
    assert done["after"]["token"] == "***" and done["after"]["role"] == "app"
    assert token not in json.dumps(mine)
    anonymous = next(r for r in mine if r["actor"] == "unauthenticated")
    assert anonymous["status"] == 401 and anonymous["outcome"] == "denied"

    exported = tmp_path / "audit.csv"
    shown = stack.cli(
        "audit", "--actor", viewer_actor, "--export", "csv", "--output", str(exported)
    )
    assert shown.returncode == 0, shown.stderr
    rows = list(csv.DictReader(exported.open()))
    assert [r["action"] for r in rows] == ["models.promote"] and rows[0]["outcome"] == "denied"
