"""The drift consumer on the real bike data, end to end through prediction events: windows,
detectors, the effect-size guard, `drift.v1`, gauges, and what it does with bad input."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest
from loopstack.core.events import EventLog
from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.settings import Settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftQueries, DriftStore
from loopstack.monitoring.drift.consumer import SpecCatalog
from loopstack.monitoring.drift.tables import drift_windows
from sqlalchemy import select

from tests.monitoring.drift.builders import (
    MODEL,
    SPEC,
    DictBundles,
    RecordingPublisher,
    append,
    consumer_of,
    events_of,
    prediction_event,
    weeks,
)
from tests.monitoring.drift.conftest import JanFeb

pytestmark = pytest.mark.integration  # a real detector server (drift runtime)


def states(store: DriftStore) -> list[tuple[str, int, str, int, str | None]]:
    """(version, window_no, state, size, status) of every window."""
    w = drift_windows.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(w.version, w.window_no, w.state, w.size, w.status).order_by(
                w.version, w.window_no
            )
        )
        return [tuple(r) for r in rows]


def test_summer_is_flagged_and_held_out_winter_weeks_are_not(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    hours = jan_feb.hours
    summer = [w for m in (6, 7, 8) for w in weeks(hours[hours["month"] == m])]
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    publisher = RecordingPublisher()
    consumer = consumer_of(settings, event_log, store, client, bundles, publisher)
    for block in [*jan_feb.held_out, *summer]:
        append(event_log, events_of(block, jan_feb.predictor))
    consumer.drain()

    features = sorted(publisher.data("feature"), key=lambda d: d["window_no"])
    assert [d["sample_size"] for d in features] == [168] * (3 + len(summer))
    assert all(d["status"] == "ok" for d in features)
    winter, hot = features[:3], features[3:]
    # Without the guard, the p-values alone call the held-out winter weeks drifted ...
    assert sum(any(f["significant"] for f in d["features"]) for d in winter) >= 2
    # ... with it, none of them is, and every summer week is, on the temperatures.
    assert [d["drifted"] for d in winter] == [False, False, False]
    assert all(d["drifted"] for d in hot)
    for d in hot:
        drifted = {f["feature"] for f in d["features"] if f["drifted"]}
        assert {"temp", "atemp"} <= drifted, d
        assert d["window_start"] < d["window_end"]
        assert d["min_statistic"] == SPEC.min_statistic
    predictions = sorted(publisher.data("prediction"), key=lambda d: d["window_no"])
    assert [d["drifted"] for d in predictions] == [False] * 3 + [True] * len(summer)
    outliers = publisher.data("outlier")
    assert len(outliers) == len(features)
    assert all(0 <= d["outlier_scores"]["outlier_fraction"] <= 1 for d in outliers)

    registry = consumer.metrics.registry
    labels = {"model": MODEL, "version": "1"}
    assert registry.get_sample_value("loopstack_drift_detected", labels) == 1.0
    p_temp = registry.get_sample_value(
        "loopstack_drift_feature_p_value", {**labels, "feature": "temp"}
    )
    assert p_temp is not None and p_temp < 1e-6
    assert registry.get_sample_value("loopstack_drift_outlier_fraction", labels) is not None
    assert bundles.fetched == [(MODEL, "1")]  # loaded once, on first use

    # The read table answers the API: newest window first, one entry per feature.
    windows = DriftQueries(store).windows(MODEL, limit=5)
    assert len(windows) == 5 and windows[0]["drifted"] is True
    assert {f["feature"] for f in windows[0]["features"]} >= {*["temp", "hum"], "prediction"}


def test_outlier_rows_join_the_review_queue(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    hours = jan_feb.hours
    july = weeks(hours[hours["month"] == 7])[:2]
    publisher = RecordingPublisher()
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    catalog = SpecCatalog(specs={MODEL: SPEC})  # the default review spec: outliers on
    consumer = consumer_of(settings, event_log, store, client, bundles, publisher, catalog)
    sent = [e for block in july for e in events_of(block, jan_feb.predictor)]
    append(event_log, sent)
    consumer.drain()

    reviews = [e for topic, e in publisher.events if topic == PREDICTIONS]
    flagged = {
        d["window_no"]: round(d["outlier_scores"]["outlier_fraction"] * d["sample_size"])
        for d in publisher.data("outlier")
    }
    assert sum(flagged.values()) > 0  # July is far from the Jan-Feb reference
    by_window = [e.data["window_no"] for e in reviews]
    assert {w: by_window.count(w) for w in flagged if flagged[w]} == {
        w: n for w, n in flagged.items() if n
    }
    ids = {e.data["prediction_id"] for e in sent}
    assert {e.data["prediction_id"] for e in reviews} <= ids
    assert all(e.data["reasons"] == ["outlier"] and e.data["version"] == "1" for e in reviews)
    assert len({e.id for e in reviews}) == len(reviews)  # ids derive from window and row


def test_shadow_predictions_stay_out_of_windows(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    week = jan_feb.held_out[0]
    publisher = RecordingPublisher()
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    consumer = consumer_of(settings, event_log, store, client, bundles, publisher)
    append(event_log, events_of(week.iloc[:100], jan_feb.predictor, route="shadow"))
    append(event_log, events_of(week.iloc[:100], jan_feb.predictor, route="canary"))
    consumer.drain()
    assert states(store) == [("1", 0, "open", 100, None)]
    skipped = consumer.metrics.registry.get_sample_value(
        "loopstack_drift_skipped_rows_total", {"model": MODEL, "reason": "shadow"}
    )
    assert skipped == 100


def test_kserve_ingest_events_fill_windows(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    """Events of the logger ingest: v2 columns, and v1 `instances`, several rows per event."""
    week = jan_feb.held_out[0]
    inputs = week[["hr", "workingday", "weathersit", "temp", "atemp", "hum", "windspeed"]]
    predictions = [float(p) for p in jan_feb.predictor.predict(week)]
    events = []
    for start in range(0, 168, 8):
        chunk = inputs.iloc[start : start + 8]
        at = week["event_timestamp"].iloc[start]
        if start % 16:
            data: dict[str, Any] = {c: chunk[c].tolist() for c in chunk.columns}  # v2 columns
        else:
            data = {"instances": chunk.to_dict(orient="records")}
        event = prediction_event({}, 0.0, at)
        event.data.update(inputs=data, outputs={"prediction": predictions[start : start + 8]})
        event.data.pop("latency_ms")
        event.data.update(latency_ms=0.0, source_id=f"kserve-{start}", protocol="v2-rest")
        events.append(event)
    publisher = RecordingPublisher()
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    consumer = consumer_of(settings, event_log, store, client, bundles, publisher)
    append(event_log, events)
    consumer.drain()
    [report] = publisher.data("feature")
    assert report["status"] == "ok" and report["sample_size"] == 168


def test_version_without_detectors_is_counted_not_watched(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
    caplog: pytest.LogCaptureFixture,
) -> None:
    week = jan_feb.held_out[0]
    publisher = RecordingPublisher()
    consumer = consumer_of(settings, event_log, store, client, DictBundles(), publisher)
    append(event_log, events_of(pd.concat([week, week]), jan_feb.predictor, version="7"))
    with caplog.at_level(logging.WARNING):
        consumer.drain()
    assert publisher.events == []
    assert "bike-demand v7 has no drift detectors" in caplog.text
    assert caplog.text.count("has no drift detectors") == 1
    counted = consumer.metrics.registry.get_sample_value(
        "loopstack_drift_no_detectors_total", {"model": MODEL, "version": "7"}
    )
    # The first window's rows once it was found unwatched, then every row of later batches;
    # only the rows that came in the same batch still wait in an open window.
    windows = states(store)
    assert windows[0][2:] == ("reported", 168, "no_detectors")
    in_open = sum(s[3] for s in windows[1:] if s[2] == "open")
    assert counted == 2 * 168 - in_open and in_open < settings.events.batch_size


def test_small_window_reports_not_enough_data(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
) -> None:
    """A window closed by time with fewer than `min_window_size` rows: `not_enough_data`."""
    week = jan_feb.held_out[0]
    publisher = RecordingPublisher()
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    consumer = consumer_of(
        settings, event_log, store, client, bundles, publisher, window_seconds=24 * 3600
    )
    # 10 hours of one day, then the next day's first 30 hours: the first window closes small.
    append(event_log, events_of(week.iloc[:10], jan_feb.predictor))
    append(event_log, events_of(week.iloc[24:54], jan_feb.predictor))
    consumer.drain()
    [small, full] = sorted(publisher.data("feature"), key=lambda d: d["window_no"])
    assert small["status"] == "not_enough_data" and small["drifted"] is False
    assert small["sample_size"] == 10 and "features" not in small
    assert full["status"] == "ok" and full["sample_size"] == 24
    [window] = DriftQueries(store).windows(MODEL, limit=5)[1:]
    assert window["status"] == "not_enough_data" and window["features"] == []


def test_detector_server_down_loses_nothing(
    settings: Settings,
    event_log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    jan_feb: JanFeb,
    unused_url: str,
) -> None:
    week = jan_feb.held_out[0]
    bundles = DictBundles({(MODEL, "1"): jan_feb.bundle})
    down = RecordingPublisher()
    with DetectorClient(unused_url, timeout=2.0) as dead:
        consumer = consumer_of(settings, event_log, store, dead, bundles, down)
        append(event_log, events_of(pd.concat([week, week.iloc[:50]]), jan_feb.predictor))
        consumer.drain()
        consumer.sweep()
        consumer.close()
    assert down.events == []
    assert states(store) == [("1", 0, "closed", 168, None), ("1", 1, "open", 50, None)]
    failures = consumer.metrics.registry.get_sample_value(
        "loopstack_drift_score_failures_total", {"model": MODEL, "version": "1"}
    )
    assert failures is not None and failures >= 2

    # The server is back (a new consumer process): the waiting window is reported, once.
    up = RecordingPublisher()
    again = consumer_of(settings, event_log, store, client, bundles, up)
    again.drain()
    again.sweep()
    assert [(d["window_no"], d["sample_size"]) for d in up.data("feature")] == [(0, 168)]
    assert states(store)[0][2:] == ("reported", 168, "ok")
    assert states(store)[1] == ("1", 1, "open", 50, None)
