"""Every management action, and every refused request, becomes an `audit.v1` event.

Recorded after the answer: who (the principal), what (route and parameters), on what (path,
model), how it ended (status, reason), the state before (when the route captured it) and after
(the answer). Reads are not recorded unless refused: the trail is of changes and attempts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from loopstack.api.services import Services
from loopstack.core.audit import audit_event
from loopstack.core.events.topics import AUDIT

__all__ = ["install_audit", "remember_before"]

MAX_RECORDED_BYTES = 8192
"""Bodies larger than this are recorded by size only (a feedback batch is data, not an action)."""
_SECRET_KEYS = ("token", "password", "secret", "api_key")
_READS = ("GET", "HEAD", "OPTIONS")
log = logging.getLogger(__name__)
_UNAUTHENTICATED = {"subject": "unauthenticated", "kind": "anonymous", "roles": []}


def remember_before(request: Request, state: Any) -> None:
    """Let a route record the state its action is about to change."""
    request.state.audit_before = state


def _masked(value: Any) -> Any:
    """Secrets masked; numbers JSON cannot carry (huge ints, NaN) kept as text."""
    if isinstance(value, dict):
        return {k: "***" if any(s in k.lower() for s in _SECRET_KEYS) else _masked(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    if len(raw) > MAX_RECORDED_BYTES:
        return {"bytes": len(raw)}
    try:
        return _masked(json.loads(raw))
    except ValueError:
        return {"bytes": len(raw)}


def install_audit(app: FastAPI, services: Services) -> None:
    """Add the audit middleware to the management API."""

    @app.middleware("http")
    async def audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        body = b"" if request.method in _READS else await request.body()
        response = await call_next(request)
        refused = response.status_code in (401, 403)
        if request.method in _READS and not refused:
            return response
        raw = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        answer = _json(raw)
        try:
            _publish(services, request, response.status_code, body, answer)
        except Exception:  # the action happened: its answer stands, the gap is logged loudly
            log.exception("audit: could not record %s %s", request.method, request.url.path)
        return Response(raw, response.status_code, headers=dict(response.headers),
                        media_type=response.media_type)  # fmt: skip


def _publish(services: Services, request: Request, status: int, body: bytes, answer: Any) -> None:
    """Queue the `audit.v1` event of one answered request."""
    route = request.scope.get("route")
    tags = getattr(route, "tags", None) or ["api"]
    principal = getattr(request.state, "principal", None)
    actor = principal.as_actor() if principal is not None else _UNAUTHENTICATED
    path_params = dict(request.path_params)
    refused = status in (401, 403)
    outcome = "ok" if status < 400 else "denied" if refused else "error"
    event = audit_event(
        actor,
        f"{tags[0]}.{getattr(route, 'name', 'unknown')}",
        request.url.path,
        outcome,
        model=path_params.get("name") if request.url.path.startswith("/v1/models/") else None,
        status=status,
        reason=answer.get("error") if status >= 400 and isinstance(answer, dict) else None,
        params={**path_params, **dict(request.query_params), "body": _json(body)},
        before=getattr(request.state, "audit_before", None),
        after=answer if status < 400 else None,
        request_id=request.headers.get("x-request-id"),
    )
    services.publisher.publish(AUDIT, event)
