"""The HTTP edge: Starlette routes that translate requests to `DetectorService` calls.

Errors are mapped to statuses here, once: a caller mistake is a 4xx `{"error": reason}`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loopstack_drift import __version__
from loopstack_drift.errors import DriftRuntimeError, RequestTooLarge
from loopstack_drift.protocol import parse_json
from loopstack_drift.service import DetectorService

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

BUNDLE_MEDIA_TYPE = "application/gzip"


def create_app(service: DetectorService) -> Starlette:
    """The detector server's ASGI app around one service."""

    gate = asyncio.Semaphore(service.limits.max_concurrent)

    def bounded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            async with gate:
                return await handler(request)

        return run

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def describe(request: Request) -> Response:
        key = request.path_params["key"]
        return JSONResponse(await run_in_threadpool(service.describe, key))

    async def read(request: Request) -> bytes:
        """The body, refused (413) as soon as it is over the limit: never held whole past it."""
        limit = service.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def fit(request: Request) -> Response:
        body = parse_json(await read(request))
        # Fitting and scoring are CPU-bound: off the event loop so /healthz stays responsive.
        summary, data = await run_in_threadpool(service.fit, request.path_params["key"], body)
        return JSONResponse({**summary, "bundle": base64.b64encode(data).decode("ascii")})

    async def score(request: Request) -> Response:
        body = parse_json(await read(request))
        return JSONResponse(
            await run_in_threadpool(service.score, request.path_params["key"], body)
        )

    async def get_bundle(request: Request) -> Response:
        data = await run_in_threadpool(service.bundle, request.path_params["key"])
        return Response(data, media_type=BUNDLE_MEDIA_TYPE)

    async def put_bundle(request: Request) -> Response:
        data = await read(request)
        return JSONResponse(await run_in_threadpool(service.load, request.path_params["key"], data))

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/detectors/{key}", describe, methods=["GET"]),
        Route("/v1/detectors/{key}/fit", bounded(fit), methods=["POST"]),
        Route("/v1/detectors/{key}/score", bounded(score), methods=["POST"]),
        Route("/v1/detectors/{key}/bundle", get_bundle, methods=["GET"]),
        Route("/v1/detectors/{key}/bundle", bounded(put_bundle), methods=["PUT"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            DriftRuntimeError: _runtime_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )


def _too_large(size: int, limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"body of {size} bytes or more is over this server's limit of {limit} bytes "
        "(--max-body-bytes): send a smaller sample"
    )


_MAX_ERROR_CHARS = 2_000


def _error(status: int, message: str) -> JSONResponse:
    # Messages name columns and fields the caller sent: a 10 MB name must not come back whole.
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "... (cut)"
    return JSONResponse({"error": message}, status_code=status)


async def _runtime_error(request: Request, exc: Any) -> Response:
    return _error(exc.status, exc.message)


async def _http_error(request: Request, exc: Any) -> Response:
    # Unknown routes and wrong methods: same body shape as every other error.
    return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")
