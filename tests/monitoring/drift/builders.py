"""Prediction events and detector bundles for the drift tests, from the real 2011 bike data,
and the consumer they feed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loopstack.core.events import Event, EventLog, OutMessage
from loopstack.core.events.topics import PREDICTIONS
from loopstack.core.modelspec import DriftSpec
from loopstack.core.settings import Settings
from loopstack.monitoring.detector_client import DetectorClient
from loopstack.monitoring.drift import DriftConsumer, DriftStore
from loopstack.monitoring.drift.consumer import SpecCatalog
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LinearRegression

PROJECT_DIR = Path(__file__).resolve().parents[3]
# The whole year (the training label file ends with February).
DATA = PROJECT_DIR / "feature_repo" / "data" / "bike_demand_replay.parquet"

MODEL = "bike-demand"
WEATHER = ["weathersit", "temp", "atemp", "hum", "windspeed"]
NUMERIC = ["temp", "atemp", "hum", "windspeed"]
CALENDAR = ["hr", "workingday"]
INPUTS = [*CALENDAR, *WEATHER]
WEEK = 168


def bike_hours() -> pd.DataFrame:
    """Every hour of 2011, in time order, with its month."""
    frame = pd.read_parquet(DATA).sort_values("event_timestamp").reset_index(drop=True)
    frame["month"] = frame["event_timestamp"].dt.month
    return frame


def weeks(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Contiguous 168-hour blocks of `frame`, in order (the last partial block dropped)."""
    return [frame.iloc[i * WEEK : (i + 1) * WEEK] for i in range(len(frame) // WEEK)]


@dataclass
class Predictor:
    """A small demand model (linear on the inputs) standing in for the trained one."""

    model: LinearRegression

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Predictor:
        """Fit it on `frame` (weathersit one-hot encoded by its code)."""
        return cls(LinearRegression().fit(_numeric(frame), frame["bikers"]))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted demand of each row."""
        return np.asarray(self.model.predict(_numeric(frame)), dtype=float)


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[[*CALENDAR, *NUMERIC]].astype(float).copy()
    out["bad_weather"] = (frame["weathersit"] != "clear").astype(float)
    return out


def reference(frame: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """The drift reference sample as the train pipeline stores it: inputs + `prediction`."""
    ref = frame[INPUTS].copy()
    ref["prediction"] = predictor.predict(frame)
    return ref


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with `Z`."""
    return pd.Timestamp(moment).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def prediction_event(
    inputs: Mapping[str, Any],
    prediction: float,
    at: datetime,
    *,
    version: str = "1",
    route: str = "champion",
    model: str = MODEL,
) -> Event:
    """A `prediction.v1` event as the inference runtime logs it (one row; the event id is the
    prediction id)."""
    data = {
        "prediction_id": str(uuid.uuid4()),
        "model": model,
        "version": version,
        "route": route,
        "protocol": "v1",
        "inputs": dict(inputs),
        "outputs": {"prediction": prediction},
        "status": "ok",
        "latency_ms": 1.0,
        "request_time": iso(at),
    }
    event = Event.create("prediction.v1", data, source="test/serving", subject=model)
    return event.with_changes(id=data["prediction_id"])


def events_of(
    frame: pd.DataFrame, predictor: Predictor, *, version: str = "1", route: str = "champion"
) -> list[Event]:
    """One prediction event per hour of `frame`, at its hour."""
    predictions = predictor.predict(frame)
    records = frame[INPUTS].to_dict(orient="records")
    return [
        prediction_event(row, float(p), at, version=version, route=route)
        for row, p, at in zip(records, predictions, frame["event_timestamp"], strict=True)
    ]


def append(log: EventLog, events: list[Event]) -> None:
    """Put events into the predictions topic as a producer would."""
    log.append([OutMessage(PREDICTIONS, e.partitionkey, e.to_json()) for e in events])


def week_spec(**changes: Any) -> DriftSpec:
    """The drift spec of the tests: weekly windows of hourly traffic (168 rows, 7 days)."""
    values: dict[str, Any] = {
        "window_size": WEEK,
        "window_seconds": 7 * 24 * 3600,
        "min_window_size": 24,
        **changes,
    }
    return DriftSpec(**values)


# Windows close by count here (168 rows = one week of hours; some weeks span > 7 days).
SPEC = week_spec(window_seconds=60 * 24 * 3600)


class DictBundles:
    """Bundles held in memory, by (model, version); a missing one means no detectors."""

    def __init__(self, bundles: Mapping[tuple[str, str], bytes] | None = None) -> None:
        self.bundles = dict(bundles or {})
        self.fetched: list[tuple[str, str]] = []

    def fetch(self, model: str, version: str) -> bytes | None:
        """The bundle of a version, or None."""
        self.fetched.append((model, version))
        return self.bundles.get((model, version))


class RecordingPublisher:
    """Collects what the consumer publishes, by topic."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []

    def publish(self, topic: str, events: Any) -> None:
        """Record the events."""
        for event in [events] if isinstance(events, Event) else events:
            event.validate()
            self.events.append((topic, event))

    def data(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The published `drift.v1` data (of one kind)."""
        drift = [e.data for _, e in self.events if e.name == "drift.v1"]
        return [d for d in drift if kind is None or d["kind"] == kind]


def consumer_of(
    settings: Settings,
    log: EventLog,
    store: DriftStore,
    client: DetectorClient,
    bundles: DictBundles,
    publisher: RecordingPublisher,
    catalog: SpecCatalog | None = None,
    **spec: Any,
) -> DriftConsumer:
    """A consumer of the test model with the weekly spec (from `catalog`, if given)."""
    drift_spec = week_spec(**spec) if spec else SPEC
    return DriftConsumer(
        settings,
        log,
        store,
        client,
        bundles,
        specs=catalog or (lambda _model: drift_spec),
        publisher=publisher,
        registry=CollectorRegistry(),
    )


def logged_drift(log: EventLog) -> list[dict[str, Any]]:
    """Every `drift.v1` event in the log's `drift` topic (id + data)."""
    from loopstack.core.events.topics import DRIFT

    out = []
    for partition in sorted(log.watermarks(DRIFT)):
        offset = 0
        while page := log.read(DRIFT, partition, offset, 500):
            for record in page:
                event = Event.from_json(record.value)
                out.append({"id": event.id, **event.data})
            offset = page[-1].offset + 1
    return out
