"""Quality alerts: N bad windows in a row publish `quality.v1` degraded, N good ones recovered;
every window's metrics are Prometheus gauges."""

from __future__ import annotations

import numpy as np
from loopstack.core.errors import Unavailable
from loopstack.core.events import Event, EventLog, EventService, Publisher
from loopstack.core.events.topics import OUTCOMES, PREDICTIONS, QUALITY
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback import ModelCatalog, ReadModel
from loopstack.monitoring.feedback.consumer import FeedbackConsumer
from prometheus_client import CollectorRegistry

from tests.monitoring.feedback.builders import bike_rows, outcome_event, prediction_event, spec
from tests.monitoring.feedback.test_join import append

WINDOW = 10


def traffic(rows: int, bad_rows: int) -> tuple[list[Event], list[Event]]:
    """Champion predictions, wildly wrong for the first `bad_rows` hours, exact after."""
    frame = bike_rows(rows, start=1000)
    noise = np.random.default_rng(3).normal(0, 80, size=rows)
    predictions, outcomes = [], []
    for i, row in frame.iterrows():
        y = float(row["bikers"])
        guess = y + float(noise[i]) if i < bad_rows else y
        predictions.append(
            prediction_event(
                f"p{i}",
                "bike-demand",
                "5",
                "champion",
                row["event_timestamp"].to_pydatetime(),
                {"prediction": guess},
                {"season": int(row["season"]), "weathersit": row["weathersit"]},
                {"city_id": "dc"},
            )
        )
        outcomes.append(outcome_event(int(y), pid=f"p{i}", model="bike-demand"))
    return predictions, outcomes


def test_degraded_then_recovered_alerts_and_gauges(
    settings: Settings, event_log: EventLog, read_model: ReadModel
) -> None:
    registry = CollectorRegistry()
    publisher = Publisher.open(settings, event_log, "feedback-test")
    calls: list[str] = []

    def baselines(model: str, version: str) -> dict[str, float]:
        calls.append(version)
        if len(calls) == 1:
            raise Unavailable("registry down")  # the first evaluation waits for it
        return {"rmse": 20.0, "mae": 15.0}

    catalog = ModelCatalog(
        specs={
            "bike-demand": spec(
                "bike-demand", window_size=WINDOW, consecutive_windows=2, degradation_margin=0.2
            )
        }
    )
    consumer = FeedbackConsumer(
        settings,
        event_log,
        read_model,
        catalog=catalog,
        publisher=publisher,
        baselines=baselines,
        registry=registry,
    )
    predictions, outcomes = traffic(rows=60, bad_rows=30)
    append(event_log, PREDICTIONS, predictions)
    append(event_log, OUTCOMES, outcomes)
    consumer.drain()  # housekeeping ran once meanwhile: the registry was down, nothing evaluated
    assert calls == ["5"] and publisher.depth == 0
    assert consumer.housekeeping()["alerts"] == 2
    assert consumer.housekeeping()["alerts"] == 0  # each window is evaluated once
    assert publisher.flush(10) == 0
    sent = [i["event"]["data"] for i in EventService(event_log).tail(QUALITY, limit=10).items]
    assert [(d["state"], d["metric"], d["version"], d["route"]) for d in sent] == [
        ("degraded", "rmse", "5", "champion"),
        ("recovered", "rmse", "5", "champion"),
    ]
    degraded, recovered = sent
    assert degraded["value"] > 24.0 and degraded["baseline"] == 20.0
    assert degraded["threshold"] == 24.0 and degraded["window"]["size"] == WINDOW
    assert recovered["value"] == 0.0

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    labels = {"model": "bike-demand", "version": "5", "route": "champion"}
    assert gauge("loopstack_quality_metric", **labels, segment="", metric="rmse") == 0.0
    assert gauge("loopstack_quality_metric", **labels, segment="", metric="count") == WINDOW
    assert gauge("loopstack_quality_window", **labels) == 5
    assert gauge("loopstack_quality_degraded", **labels, metric="rmse") == 0
    seasons = [
        s
        for m in registry.collect()
        if m.name == "loopstack_quality_metric"
        for s in m.samples
        if s.labels["metric"] == "mae" and s.labels["segment"].startswith("season=")
    ]
    assert seasons
    publisher.close()
    consumer.close()


def test_a_late_outcome_of_an_old_hour_recomputes_the_windows_it_shifts(
    settings: Settings, event_log: EventLog, read_model: ReadModel
) -> None:
    from loopstack.monitoring.feedback import QualityQueries

    catalog = ModelCatalog(specs={"bike-demand": spec("bike-demand", window_size=WINDOW)})
    consumer = FeedbackConsumer(settings, event_log, read_model, catalog=catalog)
    predictions, outcomes = traffic(rows=35, bad_rows=35)
    append(event_log, PREDICTIONS, predictions)
    append(event_log, OUTCOMES, outcomes[1:])
    consumer.drain()
    queries = QualityQueries(read_model)
    before = queries.quality("bike-demand")["windows"]
    assert [w["size"] for w in before] == [10, 10, 10]
    append(event_log, OUTCOMES, outcomes[:1])  # the oldest hour's count arrives last
    consumer.drain()
    after = queries.quality("bike-demand")["windows"]
    assert [w["start"] for w in after] == [predictions[k].data["request_time"] for k in (0, 10, 20)]
    assert all(a["metrics"] != b["metrics"] for a, b in zip(after, before, strict=True))
    consumer.close()
