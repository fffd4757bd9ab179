"""Features: load offline feature rows into the online store."""

from __future__ import annotations

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


def router(services: Services) -> APIRouter:
    """Routes under /v1/features."""
    api = APIRouter(prefix="/v1/features", tags=["features"])

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
