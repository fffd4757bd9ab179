"""The loop: manual retraining and the decision history of a model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from loopstack.api.services import Services
from loopstack.core import deadline

__all__ = ["router"]


class RetrainRequest(BaseModel):
    """Ask for a retraining now (the one-in-flight rule still applies; the cooldown does not)."""

    reason: str = Field(default="retraining requested by hand", min_length=1, max_length=500)
    params: dict[str, str] = Field(default_factory=dict)
    """Extra pipeline parameters, e.g. {"sabotage": "shuffle-labels"} (the demo's switch)."""


def router(services: Services) -> APIRouter:
    """Routes under /v1/models/{name}: retrain, history."""
    api = APIRouter(prefix="/v1/models", tags=["loop"])

    @api.post("/{name}/retrain", status_code=202)
    def retrain(name: str, body: RetrainRequest) -> dict[str, Any]:
        """Start the train pipeline for a model now; 409 names what is in flight."""
        with deadline.within(services.settings.api.request_deadline_s):
            return services.loop.retrain(name, body.reason, body.params)

    @api.get("/{name}/history")
    def history(name: str, limit: int = Query(1000, ge=1, le=100_000)) -> dict[str, Any]:
        """The model's decisions with their evidence, its model-ops metrics and loop state."""
        return services.loop.history(name, limit)

    return api
