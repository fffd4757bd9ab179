"""Fixtures of the event tests: a session Tansu broker and PostgreSQL, and per-test settings."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from loopstack.core.events import ConsumerStore, EventLog, EventMetrics, open_event_log
from loopstack.core.settings import Settings, load_settings

from tests.servers import Broker, postgres_server, tansu_broker

# Short group timeouts: a Kafka group join takes about half the session timeout.
FAST_GROUPS = {"group_session_timeout_ms": 2000, "group_heartbeat_interval_ms": 300}


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Tansu broker for the whole session (topics are unique per test)."""
    with tansu_broker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """One PostgreSQL server for the whole session (a database per test)."""
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def make_settings(
    backend: str, tmp_path: Path, bootstrap: str | None, **events: object
) -> Settings:
    """Settings for one backend with a private state dir and fast group timeouts."""
    ev: dict[str, object] = {"backend": backend, "partitions": 4, **FAST_GROUPS, **events}
    if bootstrap:
        ev["kafka_bootstrap_servers"] = bootstrap
    return load_settings(project_dir=tmp_path, state_dir=tmp_path / "state", events=ev)


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str:
    """The event log implementation under test."""
    return str(request.param)


@pytest.fixture
def settings_for(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Settings]:
    """Build settings for the current backend (starting the broker only for Kafka)."""
    bootstrap = request.getfixturevalue("tansu").bootstrap if backend == "kafka" else None

    def build(**events: object) -> Settings:
        return make_settings(backend, tmp_path, bootstrap, **events)

    return build


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    """Settings of the backend under test."""
    return settings_for()


@pytest.fixture
def event_log(settings: Settings) -> Iterator[EventLog]:
    """An open event log of the backend under test."""
    log = open_event_log(settings)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def metrics() -> EventMetrics:
    """Metrics on a private registry."""
    return EventMetrics()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A consumer store URL: an SQLite file or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return fresh_database(request.getfixturevalue("postgres"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[ConsumerStore]:
    """An open consumer store."""
    s = ConsumerStore(store_url)
    try:
        yield s
    finally:
        s.close()
