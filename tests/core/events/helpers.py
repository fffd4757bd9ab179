"""Event builders shared by the event tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loopstack.core.events import Event

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC).isoformat()


def outcome(value: int, key: str = "k", **extra: Any) -> Event:
    """An outcome.v1 event carrying a number (the tests sum them)."""
    data = {"prediction_id": f"p-{value}", "value": value, "observed_at": NOW, "source": "system"}
    return Event.create(
        "outcome.v1", {**data, **extra}, source="tests", subject="churn", partitionkey=key
    )


def prediction(**overrides: Any) -> dict[str, Any]:
    """A valid prediction.v1 data object."""
    data: dict[str, Any] = {
        "prediction_id": "p-1",
        "model": "churn",
        "version": "3",
        "route": "champion",
        "protocol": "v2-rest",
        "inputs": {"tenure": 12},
        "features": {"values": {"tenure": 12}},
        "outputs": {"prediction": 1, "probabilities": [0.2, 0.8]},
        "status": "ok",
        "latency_ms": 4.2,
        "entity_key": {"customer_id": 42},
        "request_time": NOW,
    }
    data.update(overrides)
    return data
