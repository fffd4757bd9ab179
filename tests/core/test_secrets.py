"""Secrets come from the environment and are never echoed or logged: `loopstack config show`,
and a real API process whose database is down, say where to look without the password or
the token."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from loopstack.cli.stack import embedded_components, stack_supervisor
from loopstack.core.processes import free_port
from loopstack.core.secrets import HIDDEN, redact_url, redacted
from loopstack.core.settings import Settings

from tests.conftest import PROJECT_DIR, run_cli

PASSWORD = "S3cr3t-Pw-7781"
TOKEN = "lsk_0123456789ab_" + "Q" * 43
SECRET_ENV = {
    "LOOPSTACK_API__TOKEN": TOKEN,
    "LOOPSTACK_FEEDBACK__READ_MODEL_URL": f"postgresql+psycopg://loop:{PASSWORD}@127.0.0.1:1/fb",
    "LOOPSTACK_AUTH__STORE_URL": f"postgresql+psycopg://keys:{PASSWORD}@127.0.0.1:1/auth",
}


def test_urls_and_secret_fields_are_hidden() -> None:
    assert (
        redact_url(f"postgresql://loop:{PASSWORD}@db:5432/x")
        == f"postgresql://loop:{HIDDEN}@db:5432/x"
    )
    assert redact_url("redis://:pw@cache:6379/0") == f"redis://:{HIDDEN}@cache:6379/0"
    assert redact_url("sqlite:///a/b.db") == "sqlite:///a/b.db"
    dump = redacted(
        {"api": {"token": TOKEN, "url": "http://127.0.0.1:8700"}, "tls": {"key_file": "/k.pem"}}
    )
    assert dump == {
        "api": {"token": HIDDEN, "url": "http://127.0.0.1:8700"},
        "tls": {"key_file": "/k.pem"},
    }


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPSTACK_")}
    return {**env, "LOOPSTACK_PROJECT_DIR": str(PROJECT_DIR), "COLUMNS": "300", **extra}


def test_config_show_hides_the_token_and_database_passwords() -> None:
    done = run_cli(_env(**SECRET_ENV), "config", "show")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    assert f"loop:{HIDDEN}@127.0.0.1:1/fb" in done.stdout


@pytest.mark.integration
def test_a_failing_database_is_reported_without_its_password(tmp_path: Path) -> None:
    settings = Settings(
        project_dir=PROJECT_DIR, state_dir=tmp_path / "state", api={"port": free_port()}
    )
    (component,) = [c for c in embedded_components(settings) if c.spec.name == "api"]
    spec = component.spec
    spec = type(spec)(**{**spec.__dict__, "env": {**spec.env, **SECRET_ENV}})
    supervisor = stack_supervisor(settings)
    running = supervisor.start(spec)
    try:
        supervisor.wait_healthy(running, timeout=component.start_timeout_s)
        answer = httpx.get(f"{settings.api_url}/v1/predictions", timeout=60)
        assert answer.status_code == 503 and "READ_MODEL_URL" in answer.json()["error"]
        assert PASSWORD not in answer.text
    finally:
        supervisor.stop("api", grace=5)
    log = Path(running.log).read_text()
    assert PASSWORD not in log and TOKEN not in log
