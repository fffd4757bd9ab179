"""`FeedbackService`: what the API routes (and through them the CLI) do with feedback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from loopstack.core.events import EventLog
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.errors import ReviewNotFound
from loopstack.monitoring.feedback.intake import FeedbackResult, OutcomeIntake, OutcomePublisher
from loopstack.monitoring.feedback.projector import FeedbackProjector
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.rebuild import RebuildResult, rebuild
from loopstack.monitoring.feedback.review_queries import ReviewStatus, review_page
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import reviews

__all__ = ["FeedbackService"]


class FeedbackService:
    """Outcome intake, read-model queries and rebuilds, on one read model and event log."""

    def __init__(
        self,
        settings: Settings,
        read_model: ReadModel,
        event_log: EventLog,
        publisher: OutcomePublisher,
        catalog: ModelCatalog | None = None,
    ) -> None:
        from loopstack.monitoring.feedback.consumer import catalog_for

        self.settings = settings
        self.read_model = read_model
        self.event_log = event_log
        self.catalog = catalog or catalog_for(settings)
        self.queries = QualityQueries(read_model)
        self.intake = OutcomeIntake(
            publisher, self.catalog, self.queries.model_of, max_batch=settings.feedback.max_batch
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, event_log: EventLog, publisher: OutcomePublisher
    ) -> FeedbackService:
        """The service on the read model these settings name."""
        return cls(settings, ReadModel.from_settings(settings), event_log, publisher)

    def submit(self, items: Sequence[Any]) -> FeedbackResult:
        """Validate and publish a batch of outcomes (see `OutcomeIntake.submit`)."""
        return self.intake.submit(items)

    def prediction(self, prediction_id: str) -> dict[str, Any]:
        """One prediction with its features and outcome."""
        return self.queries.prediction(prediction_id)

    def predictions(self, **filters: Any) -> dict[str, Any]:
        """A filtered page of predictions (see `QualityQueries.predictions`)."""
        return self.queries.predictions(**filters)

    def quality(self, model: str, **filters: Any) -> dict[str, Any]:
        """Windowed live quality of a model (see `QualityQueries.quality`)."""
        return self.queries.quality(model, **filters)

    def reviews(self, status: ReviewStatus = "pending", **filters: Any) -> dict[str, Any]:
        """A page of the review queue with per-version counts (see `review_page`)."""
        return review_page(self.read_model.engine, status=status, **filters)

    def decide(
        self, prediction_id: str, outcome: Any, reviewer: str, note: str | None = None
    ) -> dict[str, Any]:
        """Publish a reviewer's decision on a queued prediction as a human outcome.

        Raises:
            ReviewNotFound: the prediction is not in the review queue.
            InvalidInput: the outcome is not a valid label for the model.
        """
        with self.read_model.engine.connect() as conn:
            queued = conn.execute(
                select(reviews.c.model).where(reviews.c.prediction_id == prediction_id)
            ).first()
        if queued is None:
            raise ReviewNotFound(prediction_id)
        item = {
            "prediction_id": prediction_id,
            "model": queued[0],
            "outcome": outcome,
            "observed_at": datetime.now(UTC).isoformat(),
            "source": "human",
            "reviewer": reviewer,
            "note": note,
        }
        event = self.intake.event_for(item)
        self.intake.publish([event])
        return {"prediction_id": prediction_id, "event_id": event.id, "status": "accepted"}

    def rebuild(self) -> RebuildResult:
        """Rebuild the read model from the event log (the consumer pushes the queued lag rows)."""
        fb = self.settings.feedback
        projector = FeedbackProjector(
            self.catalog,
            entity_tolerance_s=fb.entity_time_tolerance_s,
            push_models=set(fb.push_sources),
        )
        return rebuild(self.read_model, self.event_log, fb.group, projector, self.catalog)

    def close(self) -> None:
        """Close the read model."""
        self.read_model.close()
