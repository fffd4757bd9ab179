"""Map Loopstack errors to HTTP responses, once, for the whole API."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loopstack.core.errors import Conflict, InvalidInput, LoopstackError

__all__ = ["IdempotencyKeyInFlight", "IdempotencyKeyReused", "install_error_handlers"]


class IdempotencyKeyReused(InvalidInput):
    """An `Idempotency-Key` came back with another request: one key, one logical call."""

    http_status = 422

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for a different request (method, path or body); "
            "send a new key for a new call, the same key only to retry the same call"
        )


class IdempotencyKeyInFlight(Conflict):
    """The first request with this key is still being worked on."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"the request with Idempotency-Key {key!r} is still in progress; retry in a second "
            "with the same key to get its outcome"
        )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every Loopstack error and request-validation failure as `{"error": reason}`."""

    @app.exception_handler(LoopstackError)
    async def _loopstack_error(_: Request, exc: LoopstackError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "type": type(exc).__name__}, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse({"error": f"invalid request: {reasons}", "type": "InvalidInput"}, 422)
