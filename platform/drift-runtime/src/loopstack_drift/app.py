"""The HTTP edge: Starlette routes that translate requests to `DetectorService` calls.

Errors are mapped to statuses here, once: a caller mistake is a 4xx `{"error": reason}`.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loopstack_drift import __version__
from loopstack_drift.errors import DriftRuntimeError
from loopstack_drift.protocol import parse_json
from loopstack_drift.service import DetectorService

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

BUNDLE_MEDIA_TYPE = "application/gzip"


def create_app(service: DetectorService) -> Starlette:
    """The detector server's ASGI app around one service."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def describe(request: Request) -> Response:
        key = request.path_params["key"]
        return JSONResponse(await run_in_threadpool(service.describe, key))

    async def fit(request: Request) -> Response:
        body = parse_json(await request.body())
        # Fitting and scoring are CPU-bound: off the event loop so /healthz stays responsive.
        summary, data = await run_in_threadpool(service.fit, request.path_params["key"], body)
        return JSONResponse({**summary, "bundle": base64.b64encode(data).decode("ascii")})

    async def score(request: Request) -> Response:
        body = parse_json(await request.body())
        return JSONResponse(
            await run_in_threadpool(service.score, request.path_params["key"], body)
        )

    async def get_bundle(request: Request) -> Response:
        data = await run_in_threadpool(service.bundle, request.path_params["key"])
        return Response(data, media_type=BUNDLE_MEDIA_TYPE)

    async def put_bundle(request: Request) -> Response:
        data = await request.body()
        return JSONResponse(await run_in_threadpool(service.load, request.path_params["key"], data))

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/detectors/{key}", describe, methods=["GET"]),
        Route("/v1/detectors/{key}/fit", fit, methods=["POST"]),
        Route("/v1/detectors/{key}/score", score, methods=["POST"]),
        Route("/v1/detectors/{key}/bundle", get_bundle, methods=["GET"]),
        Route("/v1/detectors/{key}/bundle", put_bundle, methods=["PUT"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            DriftRuntimeError: _runtime_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _runtime_error(request: Request, exc: Any) -> Response:
    return _error(exc.status, exc.message)


async def _http_error(request: Request, exc: Any) -> Response:
    # Unknown routes and wrong methods: same body shape as every other error.
    return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")
