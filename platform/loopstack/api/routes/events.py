"""Events: tail a topic, list dead letters, replay a time range or re-drive the DLQ."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from loopstack.core.events.service import EventPage, EventService

__all__ = ["ReplayRequest", "events_router"]


class ReplayRequest(BaseModel):
    """What to send to `topic` again: its dead letters, or its records in a time range."""

    topic: str
    source: Literal["dlq", "range"] = "dlq"
    since: datetime | None = None
    until: datetime | None = None
    event_ids: list[str] | None = None


def _page(page: EventPage) -> dict[str, Any]:
    return {"topic": page.topic, "items": page.items, "cursor": page.cursor}


def events_router(service: EventService) -> APIRouter:
    """Routes under /v1/events."""
    api = APIRouter(prefix="/v1/events", tags=["events"])

    @api.get("/dlq")
    def dead_letters(
        topic: str = Query(..., description="Source topic; entries come from `<topic>.dlq`."),
        limit: int = Query(50, ge=1, le=1000),
        after: str | None = Query(None, description="Cursor from a previous page."),
    ) -> dict[str, Any]:
        """Dead letters of a topic with reason, origin, group, attempts and payload.

        A topic with none yet answers an empty list; an unknown topic is a 404 naming the known
        ones.
        """
        return _page(service.dead_letters(topic, limit, after))

    @api.post("/replay")
    def replay(body: ReplayRequest) -> dict[str, Any]:
        """Re-drive dead letters, or append a time range again (idempotent for consumers)."""
        if body.source == "range":
            if body.since is None:
                from loopstack.core.errors import InvalidInput

                raise InvalidInput("a range replay needs `since` (ISO 8601 time)")
            result = service.replay(body.topic, body.since, body.until)
        else:
            ids = set(body.event_ids) if body.event_ids else None
            result = service.redrive(body.topic, since=body.since, event_ids=ids)
        return {
            "republished": result.republished,
            "skipped": result.skipped,
            "reasons": result.reasons,
        }

    @api.get("/{topic}")
    def tail(
        topic: str,
        limit: int = Query(50, ge=1, le=1000),
        after: str | None = Query(None, description="Cursor from a previous page."),
    ) -> dict[str, Any]:
        """The last `limit` records of a topic, or the next ones after `after`."""
        return _page(service.tail(topic, limit, after))

    return api
