"""Windows the detector server fails on deterministically are given up with their reason (the
drift API, `loopstack drift` and a metric show it), never retried; a 10 MB category value is
scored as a digest; other versions' windows are reported meanwhile. A real detector server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from loopstack.api.app import create_app
from loopstack.cli.drift import drift as drift_command
from loopstack.core.events import EventLog
from loopstack.core.settings import Settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftQueries, DriftStore
from loopstack.monitoring.drift.tables import drift_failures, drift_windows
from sqlalchemy import select
from typer.testing import CliRunner

from tests.cli.wiring import cli_for
from tests.monitoring.drift.builders import (
    MODEL,
    DictBundles,
    RecordingPublisher,
    append,
    consumer_of,
    events_of,
    prediction_event,
)
from tests.monitoring.drift.conftest import JanFeb
from tests.monitoring.drift.test_log_errors import bundle as unloadable_bundle
from tests.servers import asgi_server

pytestmark = pytest.mark.integration  # a real detector server (drift runtime)


def test_a_refused_window_fails_once_with_its_reason_and_others_are_reported(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    # v1's bundle is refused by the server (400): deterministic, so no retry can cure it.
    bundles = DictBundles({(MODEL, "1"): unloadable_bundle(), (MODEL, "2"): jan_feb.bundle})
    publisher = RecordingPublisher()
    drift = consumer_of(settings, event_log, store, client, bundles, publisher)
    week = jan_feb.held_out[0]
    append(event_log, events_of(week, jan_feb.predictor, version="1"))
    append(event_log, events_of(week, jan_feb.predictor, version="2"))
    drift.drain()
    for _ in range(3):
        drift.sweep()

    w = drift_windows.c
    with store.engine.connect() as conn:
        states = dict(conn.execute(select(w.version, w.state).where(w.window_no == 0)).all())
        failure = conn.execute(select(drift_failures)).mappings().one()
    assert states == {"1": "failed", "2": "reported"}
    assert failure["attempts"] == 1 and "bundle" in failure["reason"]
    assert [d["version"] for d in publisher.data("feature")] == ["2"]

    windows = {w["version"]: w for w in DriftQueries(store).windows(MODEL)}
    assert windows["1"]["status"] == "failed" and "bundle" in windows["1"]["error"]
    assert "not retried" in windows["1"]["error"] and windows["1"]["features"] == []
    assert windows["2"]["status"] == "ok" and windows["2"]["error"] is None
    failed = drift.metrics.registry.get_sample_value(
        "loopstack_drift_windows_total", {"model": MODEL, "version": "1", "status": "failed"}
    )
    assert failed == 1.0

    # `loopstack drift` through the real management API says why, in one line.
    with asgi_server(create_app(settings)) as url:
        cli_settings = settings.model_copy(
            update={"api": settings.api.model_copy(update={"url": url})}
        )
        result = CliRunner().invoke(cli_for(cli_settings, {}, {"drift": drift_command}), [
            "drift", MODEL
        ])  # fmt: skip
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "window 0 of v1 failed: drift detector 'bike-demand-v1' refused" in said
    assert "not a valid detector bundle" in said and "not retried" in said
    drift.close()


def test_a_10mb_category_value_is_scored_as_one_more_category(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    publisher = RecordingPublisher()
    drift = consumer_of(
        settings, event_log, store, client, DictBundles({(MODEL, "1"): jan_feb.bundle}), publisher
    )
    week = jan_feb.held_out[1]
    events = events_of(week, jan_feb.predictor)
    start = datetime(2011, 1, 3, tzinfo=UTC)
    huge = {"temp": 0.2, "atemp": 0.2, "hum": 0.5, "windspeed": 0.1, "weathersit": "x" * 10**7}
    events[5] = prediction_event(huge, 10.0, start + timedelta(hours=5))
    append(event_log, events)
    drift.drain()
    [report] = publisher.data("feature")
    assert report["status"] == "ok" and report["sample_size"] == len(week)
    drift.close()
