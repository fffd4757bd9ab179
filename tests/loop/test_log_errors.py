"""The loop controller and event-log errors: a locked log is waited out with back-off (the
warning rate-limited) and the batch applied once it frees; an error a retry cannot cure stops
it with its cause."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loopstack.core.events import Event, EventMetrics, Publisher, open_event_log
from loopstack.core.events.log.base import EventLog, OutMessage
from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.settings import Settings, load_settings
from loopstack.loop.controller import LoopController
from loopstack.loop.evidence import RolloutEvidence
from loopstack.loop.store import LoopStore
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.serving.backends.embedded import EmbeddedBackend
from prometheus_client import CollectorRegistry

from tests.core.events.locked_log import LOCKING_EVENTS, run_through_held_lock

PROJECT_DIR = Path(__file__).resolve().parents[2]
MODEL = "bike-demand"
LATEST = datetime(2011, 5, 1, 12)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite log that gives up on a lock after 100 ms; the loop controls no model."""
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=tmp_path / "state",
        events=LOCKING_EVENTS,
        loop={"models": [], "tick_s": 0.2},
        pipelines={"fork_server": False},
    )


@pytest.fixture
def controller(settings: Settings) -> Iterator[tuple[LoopController, EventLog]]:
    log = open_event_log(settings)
    store = LoopStore.from_settings(settings)
    read_model = ReadModel.from_settings(settings)
    publisher = Publisher.open(settings, log, "loop-test", EventMetrics(CollectorRegistry()))
    loop = LoopController(
        settings,
        log,
        store,
        publisher,
        EmbeddedBackend(settings),
        RolloutEvidence(read_model.engine),
    )
    try:
        yield loop, log
    finally:
        loop.close()
        publisher.close(timeout=5)
        read_model.close()
        store.close()
        log.close()


def predictions(n: int) -> list[Event]:
    start = LATEST - timedelta(hours=n - 1)
    return [
        Event.create(
            "prediction.v1",
            {
                "prediction_id": f"p{i}",
                "model": MODEL,
                "version": "1",
                "route": "champion",
                "protocol": "v2-rest",
                "inputs": {"hr": i % 24},
                "outputs": {"prediction": [10.0]},
                "status": "ok",
                "latency_ms": 1.0,
                "request_time": (start + timedelta(hours=i)).replace(tzinfo=UTC).isoformat(),
            },
            source="tests/loop",
            subject=MODEL,
        )
        for i in range(n)
    ]


def test_locked_event_log_is_waited_out_with_back_off(
    controller: tuple[LoopController, EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    loop, log = controller
    log.append([OutMessage(PREDICTIONS, e.partitionkey, e.to_json()) for e in predictions(20)])
    retries = run_through_held_lock(
        log, loop.run, lambda: loop.model_time(MODEL) == LATEST, caplog, "loopstack.loop.controller"
    )
    assert loop.model_time(MODEL) == LATEST  # the batch was applied once the lock went
    assert retries and retries[0].getMessage().startswith("loop controller: ")
    assert len(retries) <= 2  # throttled, whatever the number of attempts


def test_error_a_retry_cannot_cure_stops_the_controller_with_its_cause(
    controller: tuple[LoopController, EventLog],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, _ = controller

    def broken() -> None:
        raise KeyError("loop: a bug")

    monkeypatch.setattr(loop, "tick", broken)
    with pytest.raises(KeyError, match="a bug"):
        loop.run(threading.Event(), poll_timeout=0.1)
    assert "loop controller stops: KeyError" in caplog.text
    assert "a retry cannot cure this" in caplog.text
