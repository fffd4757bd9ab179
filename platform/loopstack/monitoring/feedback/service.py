"""`FeedbackService`: what the API routes (and through them the CLI) do with feedback."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from loopstack.core.events import EventLog
from loopstack.core.events.store import reading
from loopstack.core.secrets import redact_url
from loopstack.core.settings import Settings
from loopstack.monitoring.feedback.catalog import ModelCatalog
from loopstack.monitoring.feedback.errors import (
    ReadModelRebuilding,
    ReadModelUnavailable,
    ReviewNotFound,
)
from loopstack.monitoring.feedback.intake import FeedbackResult, OutcomeIntake, OutcomePublisher
from loopstack.monitoring.feedback.projector import FeedbackProjector
from loopstack.monitoring.feedback.queries import QualityQueries
from loopstack.monitoring.feedback.rebuild import RebuildResult, rebuild, rebuilding_since
from loopstack.monitoring.feedback.records import to_iso
from loopstack.monitoring.feedback.review_queries import ReviewStatus, review_page
from loopstack.monitoring.feedback.store import ReadModel
from loopstack.monitoring.feedback.tables import predictions, reviews, window_failures

_LOOKUP_CHUNK = 500
"""Prediction ids per lookup query (SQLite limits the bound parameters of one statement)."""

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
        fb = settings.feedback
        self.intake = OutcomeIntake(
            publisher,
            self.catalog,
            self.queries.model_of,
            max_batch=fb.max_batch,
            models_of=self._models_of,
            wait_s=fb.intake_wait_s,
            max_outcome_abs=fb.max_outcome_abs,
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
        """Windowed live quality of a model (see `QualityQueries.quality`), with the windows
        whose metrics could not be computed and why (`failed_windows`).

        Raises:
            ReadModelRebuilding: a rebuild is under way (its windows are incomplete).
            ReadModelUnavailable: the database cannot answer now (locked, away).
        """
        with self._database():
            since = rebuilding_since(self.read_model.engine)
            if since is not None:
                raise ReadModelRebuilding(to_iso(since) or "?")
            answer = self.queries.quality(model, **filters)
            answer["failed_windows"] = self._failed_windows(model, filters.get("version"))
        return answer

    def _failed_windows(self, model: str, version: str | None) -> list[dict[str, Any]]:
        f = window_failures.c
        query = select(window_failures).where(f.model == model)
        if version is not None:
            query = query.where(f.version == version)
        query = query.order_by(f.version, f.route, f.window_no)
        with reading(self.read_model.engine) as conn:
            return [
                {
                    "version": r["version"],
                    "route": r["route"],
                    "window": r["window_no"],
                    "reason": r["reason"],
                    "failed_at": to_iso(r["failed_at"]),
                }
                for r in conn.execute(query).mappings()
            ]

    @contextmanager
    def _database(self) -> Iterator[None]:
        """A read or rebuild the database cannot serve now (a lock held past the busy timeout, a
        lost connection) is a 503 naming the read model, not a 500."""
        try:
            yield
        except OperationalError as exc:
            detail = str(exc.orig or exc).splitlines()[0]
            raise ReadModelUnavailable(redact_url(self.read_model.url), detail) from exc

    def _models_of(self, prediction_ids: Collection[str]) -> dict[str, str]:
        """Prediction id -> model of the stored predictions among `prediction_ids`."""
        ids = sorted(prediction_ids)
        p = predictions.c
        found: dict[str, str] = {}
        with self._database(), reading(self.read_model.engine) as conn:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = ids[start : start + _LOOKUP_CHUNK]
                query = select(p.prediction_id, p.model).where(p.prediction_id.in_(chunk))
                found.update({str(pid): str(model) for pid, model in conn.execute(query)})
        return found

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
        with reading(self.read_model.engine) as conn:
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
            max_outcome_abs=fb.max_outcome_abs,
        )
        with self._database():
            return rebuild(self.read_model, self.event_log, fb.group, projector, self.catalog)

    def close(self) -> None:
        """Close the read model."""
        self.read_model.close()
