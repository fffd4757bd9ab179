"""Map Loopstack errors to HTTP responses, once, for the whole API."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loopstack.core.errors import LoopstackError

__all__ = ["install_error_handlers"]


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
