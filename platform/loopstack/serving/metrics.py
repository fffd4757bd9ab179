"""Prometheus metrics of the inference server (prefix `loopstack_serving_`), served on `/metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from loopstack.serving.loader import LoadedVersion

__all__ = ["ServingMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_VALUE_BUCKETS = (0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1, 2, 5, 10, 20, 50,
                  100, 200, 500, 1000, 5000)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LABELS = ("model", "version", "protocol", "route", "status")


class ServingMetrics:
    """Request counts and latency by model, version, protocol, route and status; output values."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "loopstack_serving_requests", "Inference requests answered.", _LABELS, registry=registry
        )
        self.latency = Histogram(
            "loopstack_serving_request_duration_seconds",
            "Time from request decoded to answer ready (features, model, logging enqueue).",
            _LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.values = Histogram(
            "loopstack_serving_prediction_value",
            "Predicted values (regression) or probability of the last class (classifiers).",
            ("model", "version", "route"),
            buckets=_VALUE_BUCKETS,
            registry=registry,
        )
        self.events_dropped = Counter(
            "loopstack_serving_events_dropped",
            "Prediction events not handed to the outbox (queue full or publish failed).",
            ("reason",),
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "loopstack_serving_shadow_dropped",
            "Shadow requests skipped because the shadow queue was full.",
            ("model",),
            registry=registry,
        )
        self.needs_review = Counter(
            "loopstack_serving_needs_review",
            "Answered rows flagged needs_review (class-probability margin under the minimum).",
            ("model", "version", "route"),
            registry=registry,
        )
        self.batch_rows = Histogram(
            "loopstack_serving_batch_rows",
            "Rows per model call: more than a request's rows when queued requests were batched.",
            ("model", "version"),
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.split_revision = Gauge(
            "loopstack_serving_split_revision",
            "Revision of the traffic split each model is served with.",
            ("model",),
            registry=registry,
        )
        # labels() takes a lock and hashes every call; the hot path reuses the children.
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self._value_children: dict[tuple[str, ...], Histogram] = {}
        self._batch_children: dict[tuple[str, str], Histogram] = {}

    def observe(
        self, model: str, version: str, protocol: str, route: str, status: str, seconds: float
    ) -> None:
        """Count one request and its latency."""
        key = (model, version, protocol, route, status)
        child = self._children.get(key)
        if child is None:
            child = (self.requests.labels(*key), self.latency.labels(*key))
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def observe_values(self, model: str, version: str, route: str, values: list[float]) -> None:
        """Record output values of one answer."""
        key = (model, version, route)
        child = self._value_children.get(key)
        if child is None:
            child = self.values.labels(*key)
            self._value_children[key] = child
        for value in values:
            child.observe(value)

    def observe_batch(self, version: LoadedVersion, rows: int) -> None:
        """Record the rows of one model call of a version."""
        key = (version.model, version.version)
        child = self._batch_children.get(key)
        if child is None:
            child = self._batch_children[key] = self.batch_rows.labels(*key)
        child.observe(rows)
