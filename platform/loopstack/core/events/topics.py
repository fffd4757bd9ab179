"""Topic names: one place, so publishers and consumers agree."""

from __future__ import annotations

__all__ = [
    "PLATFORM_TOPICS",
    "PREDICTIONS",
    "OUTCOMES",
    "DRIFT",
    "QUALITY",
    "DECISIONS",
    "AUDIT",
    "INFERENCE_REQUESTS",
    "INFERENCE_RESULTS",
]

PREDICTIONS = "predictions"
OUTCOMES = "outcomes"
DRIFT = "drift"
QUALITY = "quality"
DECISIONS = "decisions"
AUDIT = "audit"
INFERENCE_REQUESTS = "inference-requests"
INFERENCE_RESULTS = "inference-results"

PLATFORM_TOPICS = (
    PREDICTIONS,
    OUTCOMES,
    DRIFT,
    QUALITY,
    DECISIONS,
    AUDIT,
    INFERENCE_REQUESTS,
    INFERENCE_RESULTS,
)
"""Every topic Loopstack publishes to: each may have dead letters before it has any record."""
