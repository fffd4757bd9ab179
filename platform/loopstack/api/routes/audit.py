"""The audit trail: who changed what, when, and with what result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from loopstack.api.services import Services

__all__ = ["router"]


def router(services: Services) -> APIRouter:
    """GET /v1/audit."""
    api = APIRouter(prefix="/v1/audit", tags=["audit"])

    @api.get("")
    def audit(
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = Query(None, description="prefix, e.g. `models.` or `decision.`"),
        model: str | None = None,
        cursor: int = Query(0, ge=0, le=2**62),
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> dict[str, Any]:
        """Audit records (management actions, refusals, loop decisions) in the order applied."""
        items, next_cursor = services.audit_trail.records(
            since=since, until=until, actor=actor, action=action, model=model,
            after_seq=cursor, limit=limit,
        )  # fmt: skip
        return {"items": items, "next_cursor": next_cursor}

    return api
