"""Features: apply the feature repository; load offline feature rows into the online store."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from loopstack.api.services import Services

__all__ = ["router"]


class MaterializeRequest(BaseModel):
    """Feature rows with event times in [start, end] go to the online store (latest per entity)."""

    start: datetime
    end: datetime
    views: list[str] | None = Field(default=None, description="Feature views; default: every one")


class ApplyRequest(BaseModel):
    """Apply `feature_repo/` (validated first); a dry run only reports what would change."""

    dry_run: bool = Field(default=False, description="Only report the plan; change nothing")


def router(services: Services) -> APIRouter:
    """Routes under /v1/features."""
    api = APIRouter(prefix="/v1/features", tags=["features"])

    @api.post("/apply")
    def apply_features(body: ApplyRequest) -> dict[str, Any]:
        """Validate the feature repository, report its changes, and apply them (unless a dry run).

        A definition Feast or the offline engine cannot use is refused (422) naming the file,
        the object and the fix; nothing is applied then.
        """
        from loopstack.features.store import apply_repo

        plan = apply_repo(services.settings, services.feature_store, dry_run=body.dry_run)
        return asdict(plan)

    @api.post("/materialize")
    def materialize_features(body: MaterializeRequest) -> dict[str, Any]:
        """Materialize the feature views' rows of a time range into the online store."""
        # Feast takes seconds to import: the API starts without it and loads it on first use.
        from loopstack.features.store import materialize

        materialize(
            services.settings, body.start, body.end, body.views, store=services.feature_store
        )
        return {"start": body.start.isoformat(), "end": body.end.isoformat(), "views": body.views}

    return api
