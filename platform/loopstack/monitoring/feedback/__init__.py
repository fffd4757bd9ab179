"""Feedback and live quality: outcome intake, the prediction/outcome join, windowed quality per
version and route, the read model (CQRS), quality alerts and fresh lag features."""

from __future__ import annotations

from loopstack.monitoring.feedback.catalog import ModelCatalog, ModelInfo
from loopstack.monitoring.feedback.projector import FeedbackProjector
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.store import ReadModel, read_model_url

__all__ = [
    "FeedbackProjector",
    "ModelCatalog",
    "ModelInfo",
    "QualityQueries",
    "ReadModel",
    "read_model_url",
]
