"""Reading the audit trail: filtered, newest last, paged by sequence number."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from loopstack.core.audit.tables import audit_records, naive_utc
from loopstack.core.events.store import reading

__all__ = ["AuditTrail"]


class AuditTrail:
    """Queries over the audit read model."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        model: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Records in the order they were applied, and the cursor of the next page (or None)."""
        t = audit_records.c
        query = select(audit_records).where(t.seq > after_seq)
        if since is not None:
            query = query.where(t.at >= naive_utc(since))
        if until is not None:
            query = query.where(t.at < naive_utc(until))
        if actor is not None:
            query = query.where(t.actor == actor)
        if action is not None:
            query = query.where(t.action.startswith(action, autoescape=True))
        if model is not None:
            query = query.where(t.model == model)
        with reading(self.engine) as conn:
            rows = conn.execute(query.order_by(t.seq).limit(limit + 1)).mappings().all()
        items = [{"seq": r["seq"], **json.loads(r["document"])} for r in rows[:limit]]
        return items, (rows[limit - 1]["seq"] if len(rows) > limit else None)
