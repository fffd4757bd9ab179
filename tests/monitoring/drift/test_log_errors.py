"""The drift consumer and event-log errors: a locked log is waited out with back-off, nothing
applied twice or lost; an error a retry cannot cure stops it with a message; a window that
waits for the detector server says so once, not after every batch."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loopstack.core.events import EventLog, open_event_log
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftConsumer, DriftStore
from loopstack.monitoring.drift.tables import drift_windows
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from tests.core.events.locked_log import LOCKING_EVENTS, run_through_held_lock
from tests.monitoring.drift.builders import (
    MODEL,
    PROJECT_DIR,
    SPEC,
    DictBundles,
    RecordingPublisher,
    append,
    prediction_event,
    week_spec,
)

EVENTS = 60


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite log that gives up on a lock after 100 ms, so a held lock fails writes fast."""
    state = tmp_path / "state"
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=state,
        events=LOCKING_EVENTS,
        drift={"store_url": f"sqlite:///{state / 'drift.db'}", "sweep_interval_s": 0.2},
    )


def consumer(settings: Settings, log: EventLog, store: DriftStore, url: str) -> DriftConsumer:
    return DriftConsumer(
        settings,
        log,
        store,
        DetectorClient(url, timeout=1.0),
        DictBundles(),
        specs=lambda _model: SPEC,
        publisher=RecordingPublisher(),
        registry=CollectorRegistry(),
    )


def predictions(n: int) -> list:
    start = datetime(2011, 1, 3, tzinfo=UTC)
    row = {"temp": 0.2, "atemp": 0.2, "hum": 0.5, "windspeed": 0.1, "weathersit": 1}
    return [prediction_event(row, 10.0, start + timedelta(hours=i)) for i in range(n)]


def bundle() -> bytes:
    """A detector bundle with only its `meta.json`: enough to be sent to a server that is down."""
    meta = {"schema": {"features": ["temp"]}, "n_reference": 100}
    data = json.dumps(meta).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("meta.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def windowed(store: DriftStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(drift_windows.c.size), 0))).scalar())


def test_locked_event_log_is_waited_out_and_nothing_is_applied_twice(
    settings: Settings, store: DriftStore, unused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_event_log(settings)
    drift = consumer(settings, log, store, unused_url)
    append(log, predictions(EVENTS))
    retries = run_through_held_lock(
        log,
        drift.run,
        lambda: windowed(store) >= EVENTS,
        caplog,
        "loopstack.monitoring.drift.consumer",
    )
    assert windowed(store) == EVENTS
    assert retries and "event log (sqlite) is unavailable" in retries[0].getMessage()
    assert len(retries) <= 2  # throttled, whatever the number of attempts
    drift.close()

    # A restarted consumer reads what was not committed again; nothing counts twice.
    again = consumer(settings, log, store, unused_url)
    again.drain()
    again.close()
    assert windowed(store) == EVENTS
    log.close()


class _Broken(DriftConsumer):
    def run_once(self, timeout: float = 0.5):  # type: ignore[no-untyped-def]
        raise ValueError("drift: a bug")


def test_error_a_retry_cannot_cure_stops_the_consumer_with_its_cause(
    settings: Settings, store: DriftStore, unused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_event_log(settings)
    drift = consumer(settings, log, store, unused_url)
    drift.__class__ = _Broken
    with pytest.raises(ValueError, match="a bug"):
        drift.run(threading.Event(), poll_timeout=0.1)
    assert "a retry cannot cure this" in caplog.text and "ValueError: drift: a bug" in caplog.text
    drift.close()
    log.close()


def test_a_waiting_window_is_logged_once_per_interval(
    settings: Settings, store: DriftStore, unused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_event_log(settings)
    drift = DriftConsumer(
        settings,
        log,
        store,
        DetectorClient(unused_url, timeout=0.5),
        DictBundles({(MODEL, "1"): bundle()}),
        specs=lambda _model: week_spec(
            window_seconds=60 * 24 * 3600, window_size=10, min_window_size=5
        ),
        publisher=RecordingPublisher(),
        registry=CollectorRegistry(),
    )
    append(log, predictions(20))
    with caplog.at_level(logging.WARNING, logger="loopstack.monitoring.drift.reporter"):
        drift.drain()
        for _ in range(5):
            drift.sweep()
    waits = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
    assert len(waits) == 1, waits
    drift.close()
    log.close()
