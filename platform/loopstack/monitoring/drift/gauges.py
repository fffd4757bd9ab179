"""Prometheus metrics of the drift consumer (`loopstack_drift_*`), on a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DriftGauges"]


class DriftGauges:
    """Gauges of each version's latest reported window, and counters of what was skipped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.p_value = Gauge(
            "loopstack_drift_feature_p_value",
            "p-value of the drift test of one feature in the latest window.",
            ["model", "version", "feature"],
            registry=self.registry,
        )
        self.detected = Gauge(
            "loopstack_drift_detected",
            "1 if the latest window of a version drifted (p-value and effect size), else 0.",
            ["model", "version"],
            registry=self.registry,
        )
        self.outlier_fraction = Gauge(
            "loopstack_drift_outlier_fraction",
            "Fraction of the latest window's rows over the outlier threshold.",
            ["model", "version"],
            registry=self.registry,
        )
        self.windows = Counter(
            "loopstack_drift_windows",
            "Windows reported, by status (ok, not_enough_data, failed: given up, not retried).",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.no_detectors = Counter(
            "loopstack_drift_no_detectors",
            "Prediction rows of versions that have no drift detectors (not watched).",
            ["model", "version"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "loopstack_drift_skipped_rows",
            "Prediction rows left out of windows, by reason (shadow, no_rows, incomplete, "
            "too_wide).",
            ["model", "reason"],
            registry=self.registry,
        )
        self.score_failures = Counter(
            "loopstack_drift_score_failures",
            "Attempts to score a window that failed and will be retried with back-off (server, "
            "registry).",
            ["model", "version"],
            registry=self.registry,
        )
