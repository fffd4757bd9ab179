"""Fixtures of the feedback tests: a session PostgreSQL server, read models on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes.feedback import router
from loopstack.core.events import EventLog, Publisher, open_event_log
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.feedback import ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from loopstack.monitoring.feedback.service import FeedbackService

from tests.monitoring.feedback.builders import API_CATALOG, PROJECT_DIR
from tests.servers import postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """One PostgreSQL 15 server for the session (a fresh database per test)."""
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"fb_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def read_model_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A read-model URL: an SQLite file or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return fresh_database(request.getfixturevalue("postgres"))
    return f"sqlite:///{tmp_path / 'read_model.db'}"


@pytest.fixture
def settings(tmp_path: Path, read_model_url: str) -> Settings:
    """Settings with a private state dir, an SQLite event log and the read model under test."""
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        events={"backend": "sqlite", "partitions": 4, "batch_size": 97},
        feedback={"read_model_url": read_model_url, "push_sources": {}},
    )


@pytest.fixture
def read_model(settings: Settings) -> Iterator[ReadModel]:
    """The open read model."""
    rm = ReadModel.from_settings(settings)
    try:
        yield rm
    finally:
        rm.close()


@pytest.fixture
def event_log(settings: Settings) -> Iterator[EventLog]:
    """The SQLite event log of the test."""
    log = open_event_log(settings)
    try:
        yield log
    finally:
        log.close()


class Clock:
    """A settable clock (naive UTC), so join windows expire when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves."""
    return Clock()


@pytest.fixture
def publisher(settings: Settings, event_log: EventLog) -> Iterator[Publisher]:
    """The API's outbox publisher."""
    pub = Publisher.open(settings, event_log, "api-test")
    try:
        yield pub
    finally:
        pub.close(timeout=5)


@pytest.fixture
def consumer(
    settings: Settings, event_log: EventLog, read_model: ReadModel
) -> Iterator[FeedbackConsumer]:
    """The feedback consumer on the same log and read model."""
    c = FeedbackConsumer(settings, event_log, read_model, catalog=API_CATALOG)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(
    settings: Settings, event_log: EventLog, read_model: ReadModel, publisher: Publisher
) -> Iterator[TestClient]:
    """A TestClient of an app with only the feedback routes (on `API_CATALOG`)."""
    service = FeedbackService(settings, read_model, event_log, publisher, catalog=API_CATALOG)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router(SimpleNamespace(feedback=service)))
    with TestClient(app) as test_client:
        yield test_client
