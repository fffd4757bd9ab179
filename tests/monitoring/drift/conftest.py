"""Fixtures of the drift consumer tests: settings, an SQLite event log, the consumer's store,
and detectors fitted on Jan-Feb 2011 (held-out weeks excluded) by the session's server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from loopstack.core.events import EventLog, open_event_log
from loopstack.core.settings import Settings, load_settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftStore

from tests.monitoring.drift.builders import (
    PROJECT_DIR,
    WEATHER,
    Predictor,
    bike_hours,
    reference,
    weeks,
)

HELD_OUT = (1, 3, 6)
"""Jan-Feb weeks kept out of the reference: 1 and 6 are the warmest, the worst false alarms."""


@dataclass(frozen=True)
class JanFeb:
    """Detectors fitted on Jan-Feb, the model standing in, and the data around them."""

    bundle: bytes
    predictor: Predictor
    held_out: list[pd.DataFrame]
    hours: pd.DataFrame


@pytest.fixture(scope="session")
def jan_feb(detector_url: str) -> JanFeb:
    """Fit weather + prediction + outlier detectors on Jan-Feb minus the held-out weeks."""
    hours = bike_hours()
    blocks = weeks(hours[hours["month"] <= 2])
    kept = [b for i, b in enumerate(blocks) if i not in HELD_OUT]
    ref_hours = pd.concat([*kept, hours[hours["month"] <= 2].iloc[len(blocks) * 168 :]])
    predictor = Predictor.fit(ref_hours)
    ref = reference(ref_hours, predictor)[[*WEATHER, "prediction"]]
    with DetectorClient(detector_url) as client:
        bundle = client.fit(
            "fixture-jan-feb",
            ref,
            categorical=["weathersit"],
            prediction="prediction",
            min_size=24,
        )
    return JanFeb(bundle, predictor, [blocks[i] for i in HELD_OUT], hours)


def make_settings(state: Path, **drift: object) -> Settings:
    """Settings of one test: private state dir, SQLite log on 4 partitions, fast sweeps."""
    return load_settings(
        project_dir=PROJECT_DIR,
        state_dir=state,
        events={
            "backend": "sqlite",
            "partitions": 4,
            "batch_size": 200,
            "group_session_timeout_ms": 1000,
            "group_heartbeat_interval_ms": 200,
        },
        drift={"store_url": f"sqlite:///{state / 'drift.db'}", "sweep_interval_s": 0.2, **drift},
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The test's settings."""
    return make_settings(tmp_path / "state")


@pytest.fixture
def event_log(settings: Settings) -> Iterator[EventLog]:
    """The test's SQLite event log."""
    log = open_event_log(settings)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[DriftStore]:
    """The consumer's store."""
    opened = DriftStore.from_settings(settings)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def unused_url() -> str:
    """A loopback URL nothing listens on (a detector server that is down)."""
    from loopstack.core.processes import free_port

    return f"http://127.0.0.1:{free_port()}"
