"""`Idempotency-Key` on mutating requests: a retry gets the first outcome, never a second apply.

The CLI and SDK send one key per logical call and reuse it when they send the call again (after
a timeout, say). The first request with a key claims it; its answer is stored when it ends, and
a later request with the key and the same method, path and body gets that answer back (header
`Idempotent-Replayed: true`) without running again. A 5xx answer is not kept: the deadline ended
that work before it applied anything further, so the retry runs it again. Keys are scoped by
the caller's credentials: one caller never reads another's answer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from loopstack.api.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from loopstack.core.errors import LoopstackError
from loopstack.core.events.store import ConsumerStore

__all__ = ["HEADER", "IdempotencyStore", "Stored", "install_idempotency"]

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
STALE_AFTER_S = 900.0
"""A claim this old whose request never finished (the API was killed) may be taken over."""
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

metadata = MetaData()
outcomes = Table(
    "idempotency_outcomes",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(MAX_KEY_CHARS), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=True),  # NULL while the first request is in progress
    Column("body", LargeBinary, nullable=True),
    Column("media_type", String(200), nullable=True),
    Column("created_at", Float, nullable=False, index=True),
)


@dataclass(frozen=True)
class Stored:
    """The first answer to a key."""

    status: int
    body: bytes
    media_type: str | None


class IdempotencyStore:
    """Keys → outcomes, in SQLite (embedded) or PostgreSQL (shared by API replicas)."""

    def __init__(self, url: str, ttl_s: float) -> None:
        # Claims are one-row writes: waiting seconds for a lock means something is wrong.
        self.engine = ConsumerStore(url, busy_timeout_ms=5_000).engine
        metadata.create_all(self.engine)
        self.ttl_s = ttl_s

    def claim(self, scope: str, key: str, fingerprint: str) -> Stored | None:
        """Claim `key` for this request (None: go on and run it), or the first request's answer.

        Raises:
            IdempotencyKeyReused: the key came with another request.
            IdempotencyKeyInFlight: the first request with the key has not finished.
        """
        now = time.time()
        row = {"scope": scope, "key": key, "fingerprint": fingerprint, "created_at": now}
        with self.engine.begin() as conn:
            conn.execute(delete(outcomes).where(outcomes.c.created_at < now - self.ttl_s))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(outcomes).values(**row))
            return None
        except IntegrityError:
            pass
        mine = (outcomes.c.scope == scope) & (outcomes.c.key == key)
        with self.engine.begin() as conn:
            found = conn.execute(select(outcomes).where(mine)).mappings().first()
            if found is None:  # released meanwhile: the retry runs it
                conn.execute(insert(outcomes).values(**row))
                return None
            if found["fingerprint"] != fingerprint:
                raise IdempotencyKeyReused(key)
            if found["status"] is not None:
                return Stored(found["status"], found["body"] or b"", found["media_type"])
            if found["created_at"] >= now - STALE_AFTER_S:
                raise IdempotencyKeyInFlight(key)
            taken = conn.execute(
                update(outcomes)
                .where(mine & (outcomes.c.created_at == found["created_at"]))
                .values(created_at=now)
            )
            if taken.rowcount != 1:
                raise IdempotencyKeyInFlight(key)
            return None

    def finish(self, scope: str, key: str, answer: Stored) -> None:
        """Keep the answer of the request that claimed `key`."""
        with self.engine.begin() as conn:
            conn.execute(
                update(outcomes)
                .where((outcomes.c.scope == scope) & (outcomes.c.key == key))
                .values(status=answer.status, body=answer.body, media_type=answer.media_type)
            )

    def release(self, scope: str, key: str) -> None:
        """Forget `key`: its request applied nothing to keep, a retry runs it again."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(outcomes).where((outcomes.c.scope == scope) & (outcomes.c.key == key))
            )

    def close(self) -> None:
        """Close the connection pool."""
        self.engine.dispose()


def _error(exc: LoopstackError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "type": type(exc).__name__}, exc.http_status)


def install_idempotency(app: FastAPI, store: Callable[[], IdempotencyStore]) -> None:
    """Honour `Idempotency-Key` on every mutating request of `app` (install it outermost, so a
    replayed answer is neither audited nor authorised a second time: it was, the first time)."""

    @app.middleware("http")
    async def idempotent(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        key = request.headers.get(HEADER)
        if key is None or request.method not in _MUTATING:
            return await call_next(request)
        if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable():
            return JSONResponse(
                {"error": f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable characters "
                 "(the SDK sends a UUID)", "type": "InvalidInput"}, 400,
            )  # fmt: skip
        body = await request.body()
        fingerprint = hashlib.sha256(
            b"\0".join([request.method.encode(), request.url.path.encode(),
                        request.url.query.encode(), body])
        ).hexdigest()  # fmt: skip
        scope = hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()
        outcomes_store = store()
        try:
            stored = await run_in_threadpool(outcomes_store.claim, scope, key, fingerprint)
        except LoopstackError as exc:
            return _error(exc)
        if stored is not None:
            return Response(stored.body, stored.status, media_type=stored.media_type,
                            headers={"Idempotent-Replayed": "true"})  # fmt: skip
        try:
            response = await call_next(request)
            raw = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        except BaseException:
            await run_in_threadpool(outcomes_store.release, scope, key)
            raise
        if response.status_code >= 500:
            await run_in_threadpool(outcomes_store.release, scope, key)
        else:
            answer = Stored(response.status_code, raw, response.headers.get("content-type"))
            await run_in_threadpool(outcomes_store.finish, scope, key, answer)
        return Response(raw, response.status_code, headers=dict(response.headers),
                        media_type=response.media_type)  # fmt: skip
