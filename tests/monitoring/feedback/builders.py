"""Events and expected joins for the feedback tests, built from the repository's real data."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loopstack.core.events import Event
from loopstack.core.modelspec import ModelSpec, QualitySpec, load_model_spec
from loopstack.monitoring.feedback import ModelCatalog

PROJECT_DIR = Path(__file__).resolve().parents[3]
DATA = PROJECT_DIR / "feature_repo" / "data"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 with Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def spec(name: str, **quality: Any) -> ModelSpec:
    """The repository's spec of `name`, with quality settings overridden."""
    base = load_model_spec(PROJECT_DIR / "models", name)
    return base.model_copy(
        update={"quality": QualitySpec(**{**base.quality.model_dump(), **quality})}
    )


API_CATALOG = ModelCatalog(
    specs={
        "bike-demand": spec("bike-demand", window_size=10),
        "credit-default": spec("credit-default", window_size=10),
    }
)
"""The models of the API tests, with small quality windows."""


def bike_rows(n: int, start: int = 0) -> pd.DataFrame:
    """`n` consecutive label rows of the bike data."""
    return (
        pd.read_parquet(DATA / "bike_demand_labels.parquet")
        .iloc[start : start + n]
        .reset_index(drop=True)
    )


def credit_rows(n: int) -> pd.DataFrame:
    """`n` credit customers with their label and `student` segment."""
    labels = pd.read_parquet(DATA / "credit_default_labels.parquet")
    customers = pd.read_parquet(DATA / "credit_customers.parquet")
    frame = labels.merge(
        customers.drop(columns=["event_timestamp"], errors="ignore"), on="customer_id"
    )
    return frame.iloc[:n].reset_index(drop=True)


def prediction_event(
    pid: str,
    model: str,
    version: str,
    route: str,
    request_time: datetime,
    outputs: dict[str, Any],
    inputs: dict[str, Any],
    entity_key: dict[str, Any],
    correlation: str | None = None,
) -> Event:
    """A prediction.v1 event as the serving runtime logs it."""
    data = {
        "prediction_id": pid,
        "model": model,
        "version": version,
        "route": route,
        "protocol": "v2-rest",
        "inputs": inputs,
        "features": {"values": {}},
        "outputs": outputs,
        "status": "ok",
        "latency_ms": 3.0,
        "entity_key": entity_key,
        "request_time": iso(request_time),
    }
    if correlation:
        data["paired_prediction_id"] = correlation
    return Event.create("prediction.v1", data, source="tests/serving", subject=model)


def outcome_event(
    value: Any,
    *,
    pid: str | None = None,
    model: str | None = None,
    entity_key: dict[str, Any] | None = None,
    event_time: datetime | None = None,
    source: str = "system",
    observed_at: datetime = T0,
) -> Event:
    """An outcome.v1 event, by prediction id or by entity key + event time."""
    data: dict[str, Any] = {"value": value, "observed_at": iso(observed_at), "source": source}
    if pid:
        data["prediction_id"] = pid
    if model:
        data["model"] = model
    if entity_key:
        data["entity_key"] = entity_key
        data["event_time"] = iso(event_time or T0)
    return Event.create(
        "outcome.v1", data, source="tests/feedback", subject=model, partitionkey=model or pid
    )


@dataclass
class Scenario:
    """Events to replay and the join they must produce."""

    predictions: list[Event] = field(default_factory=list)
    outcomes: list[Event] = field(default_factory=list)
    early: list[Event] = field(default_factory=list)
    """Outcomes published before any prediction (they wait for it)."""
    expected: list[dict[str, Any]] = field(default_factory=list)
    """Per joined prediction: prediction_id, version, route, y, score, human, segments."""
    orphans: set[str] = field(default_factory=set)
    """Event ids of outcomes that match nothing."""


def bike_scenario(n: int = 120, seed: int = 7) -> Scenario:
    """Bike demand: champion v1 for every hour, a shadow v2 on the same requests; outcomes by id
    (some by city + hour instead), duplicates, late human overrides, early outcomes, orphans."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rows = bike_rows(n, start=500)
    s = Scenario()
    for i, row in rows.iterrows():
        hour = row["event_timestamp"].to_pydatetime()
        inputs = {
            k: row[k].item() if hasattr(row[k], "item") else row[k]
            for k in ("season", "weathersit", "hr", "temp")
        }
        y = float(row["bikers"])
        champion = max(0.0, y + float(noise.normal(0, 25)))
        shadow = max(0.0, y + float(noise.normal(5, 40)))
        pid = f"bike-{i}"
        s.predictions.append(
            prediction_event(
                pid,
                "bike-demand",
                "1",
                "champion",
                hour,
                {"prediction": [champion]},
                inputs,
                {"city_id": "dc"},
            )
        )
        s.predictions.append(
            prediction_event(
                f"{pid}-shadow",
                "bike-demand",
                "2",
                "shadow",
                hour,
                {"prediction": [shadow]},
                inputs,
                {"city_id": "dc"},
                correlation=pid,
            )
        )
        label, human = y, False
        if i % 9 == 0:  # by entity key + event time: the caller never kept the id
            out = outcome_event(
                int(y),
                model="bike-demand",
                entity_key={"city_id": "dc"},
                event_time=hour + timedelta(seconds=20),
            )
        else:
            out = outcome_event(int(y), pid=pid, model="bike-demand" if i % 2 else None)
        (s.early if i % 11 == 0 else s.outcomes).append(out)
        if i % 7 == 0:
            s.outcomes.append(out)  # the same event delivered twice
            s.outcomes.append(outcome_event(int(y), pid=pid))  # sent again: a new event id
        if i % 10 == 3:  # a human corrects the count later
            label, human = y + 10, True
            s.outcomes.append(
                outcome_event(
                    int(y) + 10, pid=pid, source="human", observed_at=T0 + timedelta(hours=1)
                )
            )
        segments = {"season": str(inputs["season"]), "weathersit": str(inputs["weathersit"])}
        s.expected.append(
            {
                "prediction_id": pid,
                "version": "1",
                "route": "champion",
                "y": label,
                "score": champion,
                "human": human,
                "segments": segments,
            }
        )
        s.expected.append(
            {
                "prediction_id": f"{pid}-shadow",
                "version": "2",
                "route": "shadow",
                "y": label,
                "score": shadow,
                "human": human,
                "segments": segments,
            }
        )
    for k in range(5):
        orphan = outcome_event(100 + k, pid=f"nobody-{k}", model="bike-demand")
        s.outcomes.append(orphan)
        s.orphans.add(orphan.id)
    rng.shuffle(s.predictions)
    rng.shuffle(s.outcomes)
    return s


def credit_scenario(n: int = 150, seed: int = 11) -> Scenario:
    """Credit default: champion v3 and canary v4 split the traffic; outcomes by id."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rows = credit_rows(n)
    s = Scenario()
    for i, row in rows.iterrows():
        y = int(row["default"])
        p = float(np.clip(0.15 + 0.5 * y + noise.normal(0, 0.25), 0.01, 0.99))
        version, route = ("4", "canary") if i % 4 == 0 else ("3", "champion")
        pid = f"credit-{i}"
        when = T0 + timedelta(minutes=int(i))
        s.predictions.append(
            prediction_event(
                pid,
                "credit-default",
                version,
                route,
                when,
                {"prediction": int(p >= 0.5), "probabilities": [1 - p, p]},
                {},
                {"customer_id": int(row["customer_id"])},
            )
        )
        s.predictions[-1].data["features"] = {
            "values": {"student": row["student"], "balance": float(row["balance"])}
        }
        out = outcome_event(bool(y) if i % 3 else ("Yes" if y else "No"), pid=pid)
        (s.early if i % 13 == 0 else s.outcomes).append(out)
        s.expected.append(
            {
                "prediction_id": pid,
                "version": version,
                "route": route,
                "y": float(y),
                "score": p,
                "human": False,
                "segments": {"student": str(row["student"])},
            }
        )
    rng.shuffle(s.predictions)
    rng.shuffle(s.outcomes)
    return s
