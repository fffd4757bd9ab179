"""Prometheus metrics of the event backbone (`loopstack_events_*`) on a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EventMetrics"]


class EventMetrics:
    """Counters and gauges of publishing, consuming and dead-lettering.

    The composition root passes its registry (the one `/metrics` serves); tests pass a fresh one.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.published = Counter(
            "loopstack_events_published", "Events written to the event log.", ["topic"], registry=r
        )
        self.publish_rejected = Counter(
            "loopstack_events_publish_rejected",
            "publish() calls refused because the outbox was full.",
            ["outbox"],
            registry=r,
        )
        self.send_errors = Counter(
            "loopstack_events_send_errors",
            "Failed attempts of the outbox sender to append a batch (retried).",
            ["outbox"],
            registry=r,
        )
        self.spill_depth = Gauge(
            "loopstack_events_outbox_depth", "Events waiting in the outbox.", ["outbox"], registry=r
        )
        self.consumed = Counter(
            "loopstack_events_consumed",
            "Records a consumer group read.",
            ["topic", "group"],
            registry=r,
        )
        self.applied = Counter(
            "loopstack_events_applied",
            "Events a consumer group applied (first delivery).",
            ["topic", "group"],
            registry=r,
        )
        self.duplicates = Counter(
            "loopstack_events_duplicates",
            "Redelivered events skipped because the group had applied them.",
            ["topic", "group"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "loopstack_events_dead_lettered",
            "Events sent to a dead-letter topic.",
            ["topic", "group", "reason"],
            registry=r,
        )
        self.handler_retries = Counter(
            "loopstack_events_handler_retries",
            "Handler attempts that failed and were retried.",
            ["topic", "group"],
            registry=r,
        )
        self.lag = Gauge(
            "loopstack_events_consumer_lag",
            "Records after the group's committed offset.",
            ["group", "topic", "partition"],
            registry=r,
        )
