"""Feedback and live-quality routes: they only translate HTTP to the `FeedbackService`.

- `POST /v1/feedback`: a batch of outcomes (a JSON list, or `{"items": [...]}`); 200 when every
  item was accepted, 207 when some were (each item says accepted or rejected, and why), 422
  when none was.
- `POST /v1/feedback/rebuild`: rebuild the read model from the event log.
- `GET /v1/models/{name}/quality`: closed quality windows per version, route and segment.
- `GET /v1/predictions/{id}`, `GET /v1/predictions`: what was predicted and the outcome.
- `GET /v1/predictions/{id}/why`: inputs, features, version lineage, explanation, outcome.
- `GET /v1/reviews`: the review queue; `POST /v1/reviews/{id}/decision`: a reviewer's decision
  (a human outcome, by the authenticated caller).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from loopstack.api.auth import principal_of
from loopstack.monitoring.feedback.review_queries import ReviewStatus
from loopstack.monitoring.feedback.service import FeedbackService
from loopstack.monitoring.feedback.why import PredictionWhy

__all__ = ["FeedbackServices", "router"]

Route = Literal["champion", "canary", "shadow"]


class ReviewDecision(BaseModel):
    """A reviewer's answer for a flagged prediction."""

    model_config = ConfigDict(extra="forbid")
    outcome: Any = Field(
        description="The true value: one of the model's classes for a classifier (the spec's "
        "`classes`, else the champion's, else 0/1), a finite number for a regression."
    )
    note: str | None = Field(None, max_length=2000, description="Why (kept with the decision).")


class FeedbackServices(Protocol):
    """What the router needs of the composition root."""

    @property
    def feedback(self) -> FeedbackService:
        """The feedback service (built once)."""

    @property
    def why(self) -> PredictionWhy:
        """Why-a-prediction answers (built once; only its route reads it)."""


def router(services: FeedbackServices) -> APIRouter:
    """The feedback and quality routes on `services.feedback`."""
    api = APIRouter(tags=["feedback"])

    @api.post("/v1/feedback", response_model=None)
    def send_feedback(batch: Annotated[Any, Body()]) -> JSONResponse:
        """Validate a batch of outcomes and publish the valid ones as `outcome.v1` events.

        Each item: `outcome`, `observed_at`, `source` (`system` or `human`; a human override
        replaces a system outcome), and `prediction_id`, or `model` + `entity_key` + `event_time`.
        A classifier's `outcome` must be one of its classes (a rejected item names the allowed
        values); a regression's a finite number; no number beyond `feedback.max_outcome_abs`
        in magnitude. An outcome by `prediction_id` whose prediction the read model does not
        hold yet waits up to `feedback.intake_wait_s` for it, to be checked against its model.
        """
        items = batch.get("items") if isinstance(batch, dict) else batch
        if not isinstance(items, list):
            items = [batch]
        result = services.feedback.submit(items)
        body = result.to_dict()
        if result.accepted == 0:
            first = next(i["reason"] for i in result.items if i["status"] == "rejected")
            body = {
                "error": f"all {result.rejected} item(s) rejected (first: {first})",
                "type": "FeedbackRejected",
                **body,
            }
            return JSONResponse(body, status_code=422)
        return JSONResponse(body, status_code=207 if result.rejected else 200)

    @api.post("/v1/feedback/rebuild")
    def rebuild_read_model() -> dict[str, int]:
        """Empty the read model and rebuild it from the events the log retains."""
        return services.feedback.rebuild().to_dict()

    @api.get("/v1/models/{name}/quality")
    def model_quality(
        name: str,
        version: str | None = None,
        route: Route | None = None,
        segment: str | None = None,
        last: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    ) -> dict[str, Any]:
        """Closed windows (oldest first) of a model: metrics, segments, gaps, joined counts, and
        `failed_windows` (windows whose metrics could not be computed, with the reason).
        503 while `feedback rebuild` runs (the windows are incomplete until it ends)."""
        return services.feedback.quality(
            name, version=version, route=route, segment=segment, last=last
        )

    @api.get("/v1/predictions/{prediction_id}")
    def prediction(prediction_id: str) -> dict[str, Any]:
        """What was predicted, by which version and route, with which features; the outcome."""
        return services.feedback.prediction(prediction_id)

    @api.get("/v1/predictions/{prediction_id}/why")
    def prediction_why(prediction_id: str) -> dict[str, Any]:
        """Inputs (masked), features with their feature-store times, the version and its
        lineage, the output, the explanation asked for at serving time, and the outcome."""
        return services.why.why(prediction_id)

    @api.get("/v1/predictions")
    def predictions(
        model: str | None = None,
        version: str | None = None,
        route: Route | None = None,
        has_outcome: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of predictions, newest first; pass `next_cursor` back for the next page."""
        return services.feedback.predictions(
            model=model,
            version=version,
            route=route,
            has_outcome=has_outcome,
            limit=limit,
            cursor=cursor,
        )

    @api.get("/v1/reviews")
    def review_queue(
        model: str | None = None,
        version: str | None = None,
        status: ReviewStatus = "pending",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Predictions flagged `needs_review` (low confidence, outliers), oldest first, with
        inputs and answer; per version: pending, decided, overridden, override rate."""
        return services.feedback.reviews(
            status=status, model=model, version=version, limit=limit, cursor=cursor
        )

    @api.post("/v1/reviews/{prediction_id}/decision")
    def decide_review(
        prediction_id: str, decision: ReviewDecision, request: Request
    ) -> dict[str, Any]:
        """Record the reviewer's label for a flagged prediction (a human outcome: it wins over
        system outcomes in live quality); the reviewer is the authenticated caller."""
        reviewer = principal_of(request).subject
        return services.feedback.decide(prediction_id, decision.outcome, reviewer, decision.note)

    return api
