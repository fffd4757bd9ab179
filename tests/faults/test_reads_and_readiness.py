"""Reads never wait for writes: the quality API answers while the feedback consumer applies a
backlog in large transactions.

The consumer is a real process (the crash test's: the production `FeedbackConsumer`, draining
the log once) applying thousands of predictions and outcomes in batches of 1,000 events, one
transaction each, on the SQLite read model; the quality route is the API's own, served over
HTTP. Before, every read began `BEGIN IMMEDIATE` and queued behind those transactions; now a
read is a WAL snapshot that takes no lock a writer holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes.feedback import router
from loopstack.core.events import Event, EventLog, OutMessage, Publisher, open_event_log, reading
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.feedback import ReadModel
from loopstack.monitoring.feedback.service import FeedbackService
from loopstack.monitoring.feedback.tables import predictions
from sqlalchemy import func, select

from tests.monitoring.feedback.builders import (
    API_CATALOG,
    PROJECT_DIR,
    T0,
    outcome_event,
    prediction_event,
)
from tests.servers import asgi_server

pytestmark = pytest.mark.integration

BACKLOG = 2_500
"""Predictions, each with its outcome: 5,000 events."""
BATCH = 1_000
"""Events per consumer transaction (a large backlog is applied in large batches)."""


def _backlog() -> list[Event]:
    """Bike-demand predictions of consecutive hours and their outcomes (by prediction id)."""
    events: list[Event] = []
    for i in range(BACKLOG):
        pid = f"backlog-{i}"
        hour = T0 + timedelta(hours=i)
        inputs = {"season": 1, "weathersit": "clear", "hr": hour.hour, "temp": 0.4}
        events.append(
            prediction_event(pid, "bike-demand", "1", "champion", hour,
                             {"prediction": [100.0 + i % 50]}, inputs, {"city_id": "dc"})
        )  # fmt: skip
        events.append(outcome_event(100 + i % 40, pid=pid, model="bike-demand"))
    return events


@pytest.fixture
def backlogged(tmp_path: Path) -> Iterator[tuple[Settings, EventLog, ReadModel]]:
    """Settings of a private SQLite event log holding the backlog and an empty read model."""
    settings = load_settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        events={"backend": "sqlite", "partitions": 1, "batch_size": BATCH,
                "group_session_timeout_ms": 1000, "group_heartbeat_interval_ms": 200},
        feedback={"read_model_url": f"sqlite:///{tmp_path / 'read_model.db'}",
                  "push_sources": {}},
    )  # fmt: skip
    log = open_event_log(settings)
    read_model = ReadModel.from_settings(settings)
    try:
        messages = [
            OutMessage(
                PREDICTIONS if e.type == "prediction.v1" else OUTCOMES, e.partitionkey, e.to_json()
            )
            for e in _backlog()
        ]
        for start in range(0, len(messages), 1_000):
            log.append(messages[start : start + 1_000])
        yield settings, log, read_model
    finally:
        read_model.close()
        log.close()


def _joined(read_model: ReadModel) -> tuple[int, int]:
    """(predictions applied, predictions joined with their outcome) in the read model."""
    p = predictions.c
    with reading(read_model.engine) as conn:
        applied = conn.execute(select(func.count()).select_from(predictions)).scalar_one()
        joined = conn.execute(
            select(func.count()).select_from(predictions).where(p.joined_at.is_not(None))
        ).scalar_one()
    return int(applied), int(joined)


def test_quality_reads_answer_within_a_second_while_the_consumer_applies_a_backlog(
    backlogged: tuple[Settings, EventLog, ReadModel],
) -> None:
    settings, log, read_model = backlogged
    publisher = Publisher.open(settings, log, "api-test")
    service = FeedbackService(settings, read_model, log, publisher, catalog=API_CATALOG)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router(SimpleNamespace(feedback=service)))
    env = {**os.environ, **settings.as_env(), "FB_JOIN_S": "1", "FB_WINDOW": "20",
           "FB_KILL_AT": "", "PYTHONPATH": str(PROJECT_DIR)}  # fmt: skip
    consumer = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.feedback.consumer_child"],
        env=env,
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    latencies: list[float] = []
    progress: list[int] = []
    try:
        with asgi_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 240
            while _joined(read_model)[0] == 0:  # the consumer is applying its first batch
                assert consumer.poll() is None, consumer.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the consumer applied nothing in 240 s"
                time.sleep(0.05)
            deadline = time.monotonic() + 600
            while consumer.poll() is None:
                started = time.perf_counter()
                answer = client.get("/v1/models/bike-demand/quality")
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                progress.append(_joined(read_model)[0])
                assert time.monotonic() < deadline, "the consumer did not finish in 600 s"
                time.sleep(0.02)
            _, stderr = consumer.communicate(timeout=60)
            assert consumer.returncode == 0, stderr[-2000:]
            after = client.get("/v1/models/bike-demand/quality")  # still answers
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
        publisher.close(timeout=5)
    p99 = float(np.percentile(latencies, 99))
    print(f"{len(latencies)} reads during the backlog: p99 {p99:.3f} s, max {max(latencies):.3f} s")
    assert p99 < 1.0, f"p99 {p99:.2f} s over {len(latencies)} reads (max {max(latencies):.2f} s)"
    # The reads overlapped the backlog: the consumer applied batches between them.
    assert len(latencies) >= 20 and progress[0] < BACKLOG, (len(latencies), progress[:3])
    # Nothing accepted was lost: every prediction applied and joined with its outcome.
    assert _joined(read_model) == (BACKLOG, BACKLOG)
    assert after.status_code == 200, after.text
