"""Audit records: built as `audit.v1` events, applied (with `decision.v1`) into the read model."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert

from loopstack.core.audit.tables import audit_records, naive_utc
from loopstack.core.events.envelope import Event

__all__ = ["apply_audit", "audit_event"]

SOURCE = "loopstack/api"


def audit_event(
    actor: dict[str, Any],
    action: str,
    target: str,
    outcome: str,
    *,
    model: str | None = None,
    status: int | None = None,
    reason: str | None = None,
    params: dict[str, Any] | None = None,
    before: Any = None,
    after: Any = None,
    request_id: str | None = None,
) -> Event:
    """One management action as an `audit.v1` event (who, what, on what, how it ended)."""
    data: dict[str, Any] = {
        "actor": actor["subject"], "actor_kind": actor["kind"], "roles": list(actor["roles"]),
        "action": action, "target": target, "outcome": outcome, "model": model, "status": status,
        "reason": reason, "params": params, "before": before, "after": after,
        "request_id": request_id,
    }  # fmt: skip
    return Event.create(
        "audit.v1", {k: v for k, v in data.items() if v is not None}, source=SOURCE, subject=model
    )


def apply_audit(event: Event, conn: Connection) -> None:
    """Insert one `audit.v1` or `decision.v1` event as an audit row (once per event id)."""
    data = event.data
    if event.name == "audit.v1":
        row = {"actor": data["actor"], "action": data["action"], "target": data["target"],
               "model": data.get("model"), "outcome": data.get("outcome", "ok")}  # fmt: skip
        document = data
    elif event.name == "decision.v1":
        evidence = data.get("evidence") or {}
        actor = str(evidence.get("actor") or event.source.rsplit("/", 1)[-1])
        version = f"/version:{data['version']}" if data.get("version") else ""
        row = {"actor": actor, "action": f"decision.{data['kind']}",
               "target": f"model:{data['model']}{version}", "model": data["model"],
               "outcome": "ok"}  # fmt: skip
        document = {**data, "actor": actor, "action": row["action"], "target": row["target"]}
    else:
        return
    conn.execute(
        insert(audit_records).values(
            event_id=event.id,
            at=naive_utc(event.time),
            **row,
            document=json.dumps(
                {
                    **document,
                    "event_id": event.id,
                    "time": event.time.isoformat(),
                    "source": event.source,
                },
                default=str,
            ),
        )
    )
