"""Prometheus gauges of live quality (`loopstack_quality_*`), on a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

__all__ = ["QualityGauges"]

_LABELS = ["model", "version", "route", "segment"]


class QualityGauges:
    """`loopstack_quality_metric{model,version,route,segment,metric}` of the latest closed window
    (segment `""`: the whole window, `season=1`: one segment value), the best-worst segment
    gap, the alert state and the latest window number."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # One gauge with a `metric` label: rules and dashboards select metrics by label.
        self.value = Gauge(
            "loopstack_quality_metric",
            "Live value of a quality metric in the latest closed window.",
            [*_LABELS, "metric"],
            registry=self.registry,
        )
        self.gap = Gauge(
            "loopstack_quality_segment_gap",
            "Best minus worst segment value of a metric in the latest window.",
            ["model", "version", "route", "segment", "metric"],
            registry=self.registry,
        )
        self.degraded = Gauge(
            "loopstack_quality_degraded",
            "1 while a version's metric is degraded against its training baseline.",
            ["model", "version", "route", "metric"],
            registry=self.registry,
        )
        self.window = Gauge(
            "loopstack_quality_window",
            "Number of the latest closed quality window.",
            ["model", "version", "route"],
            registry=self.registry,
        )

    def set_window(
        self,
        model: str,
        version: str,
        route: str,
        window_no: int,
        values: list[tuple[str, str, float | None]],
    ) -> None:
        """Publish a closed window's (segment, metric, value) rows."""
        self.window.labels(model, version, route).set(window_no)
        for segment, metric, value in values:
            if value is None:
                continue
            if segment and "=" not in segment:
                self.gap.labels(model, version, route, segment, metric).set(value)
            else:
                self.value.labels(model, version, route, segment, metric).set(value)
