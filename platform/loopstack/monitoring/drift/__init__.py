"""Drift and outlier detection on logged traffic: per-version windows of `prediction.v1`
events, scored on the detector server, reported once as `drift.v1` and Prometheus gauges."""

from __future__ import annotations

from loopstack.monitoring.drift.bundles import BUNDLE_ARTIFACT, MlflowBundles, detector_key
from loopstack.monitoring.drift.consumer import DriftConsumer, SpecCatalog
from loopstack.monitoring.drift.queries import DriftQueries
from loopstack.monitoring.drift.store import DriftStore

__all__ = [
    "BUNDLE_ARTIFACT",
    "DriftConsumer",
    "DriftQueries",
    "DriftStore",
    "MlflowBundles",
    "SpecCatalog",
    "detector_key",
]
