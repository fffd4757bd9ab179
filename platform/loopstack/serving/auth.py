"""Bearer tokens on inference (`auth.inference`): REST headers and gRPC `authorization` metadata.

Only model routes are guarded; health, server metadata and `/metrics` stay open for probes and
scrapes, and the KServe logger's ingest endpoint stays on the cluster network (NetworkPolicy).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from grpc import aio

from loopstack.core.auth import Principal, Role
from loopstack.core.auth.authenticator import Authenticator
from loopstack.core.errors import Forbidden
from loopstack.core.settings import Settings

__all__ = ["INFERENCE_ROLES", "InferenceAuth"]

INFERENCE_ROLES = frozenset({Role.APP, Role.DEPLOYER, Role.ADMIN})
_GUARDED_PREFIXES = ("/v1/models", "/v2/models")
_GUARDED_RPCS = ("ModelInfer", "ModelMetadata", "ModelReady")


class InferenceAuth:
    """Checks a caller's token and role for inference."""

    def __init__(self, settings: Settings) -> None:
        self.authenticator = Authenticator(settings)

    def check(self, authorization: str | None) -> Principal:
        """The caller, or Unauthorized / Forbidden saying what is missing."""
        principal = self.authenticator.authenticate(authorization)
        if not principal.roles & INFERENCE_ROLES:
            held = ", ".join(sorted(principal.roles)) or "no role"
            raise Forbidden(
                f"inference needs role app, deployer or admin; {principal.subject} has {held}"
            )
        return principal

    def install_rest(
        self, app: FastAPI, error_response: Callable[[BaseException], Response]
    ) -> None:
        """Guard the model routes of KServe's FastAPI app."""

        @app.middleware("http")
        async def authorize(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if request.url.path.startswith(_GUARDED_PREFIXES):
                try:
                    self.check(request.headers.get("authorization"))
                except Exception as exc:
                    return error_response(exc)
            return await call_next(request)

    def grpc_interceptor(self) -> aio.ServerInterceptor:
        """A server interceptor guarding the model RPCs."""
        return _GrpcAuth(self)


class _GrpcAuth(aio.ServerInterceptor):
    def __init__(self, auth: InferenceAuth) -> None:
        self.auth = auth

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        if not handler_call_details.method.endswith(_GUARDED_RPCS):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self.auth.check(metadata.get("authorization"))
        except Exception as exc:
            return _refusal(exc)
        return await continuation(handler_call_details)


def _refusal(exc: Exception) -> Any:
    import grpc

    from loopstack.core.errors import LoopstackError

    code = (
        grpc.StatusCode.PERMISSION_DENIED
        if isinstance(exc, Forbidden)
        else grpc.StatusCode.UNAUTHENTICATED
    )
    message = exc.message if isinstance(exc, LoopstackError) else str(exc)

    async def refuse(_request: Any, context: Any) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)
