"""Prometheus gauges of live quality (`loopstack_quality_*`) and of the review queue
(`loopstack_review*`), on a registry passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

__all__ = ["QualityGauges", "ReviewGauges"]

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
        self.failed = Gauge(
            "loopstack_quality_windows_failed",
            "Closed windows whose metrics could not be computed (the quality API says why).",
            ["model"],
            registry=self.registry,
        )
        self._failed_models: set[str] = set()

    def set_failed(self, counts: dict[str, int]) -> int:
        """Publish failed windows per model (a model no longer listed goes back to 0)."""
        for model in self._failed_models - counts.keys():
            self.failed.labels(model).set(0)
        self._failed_models |= counts.keys()
        for model, count in counts.items():
            self.failed.labels(model).set(count)
        return sum(counts.values())

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


class ReviewGauges:
    """The review queue per model version: pending and decided reviews, and the share of
    decisions that overrode the model's answer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model", "version"]
        self.pending = Gauge(
            "loopstack_reviews_pending",
            "Flagged predictions waiting for a reviewer's decision.",
            labels,
            registry=registry,
        )
        self.decided = Gauge(
            "loopstack_reviews_decided",
            "Flagged predictions a reviewer decided.",
            labels,
            registry=registry,
        )
        self.override_rate = Gauge(
            "loopstack_review_override_rate",
            "Share of review decisions that differ from the model's answer.",
            labels,
            registry=registry,
        )

    def set(self, summary: Sequence[dict[str, Any]]) -> int:
        """Publish `review_summary` rows; return how many versions they cover."""
        for row in summary:
            labels = (row["model"], row["version"])
            self.pending.labels(*labels).set(row["pending"])
            self.decided.labels(*labels).set(row["decided"])
            if row["override_rate"] is not None:
                self.override_rate.labels(*labels).set(row["override_rate"])
        return len(summary)
